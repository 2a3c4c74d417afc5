from lightning_mnist.cli import main

main()
