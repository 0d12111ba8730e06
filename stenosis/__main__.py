from stenosis.cli.main import main

main()
