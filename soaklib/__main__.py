from soaklib.cli import main

main()
