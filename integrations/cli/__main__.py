from integrations.cli.main import main

main()
