from shark.cli.main import main

main()
