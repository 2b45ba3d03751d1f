"""`python -m ragtrain` (and `torchrun -m ragtrain`) run the same CLI as the `ragtrain` script."""

from ragtrain.cli import main

if __name__ == "__main__":
    main()
