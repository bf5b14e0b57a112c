from sectune.cli.main import main

main()
