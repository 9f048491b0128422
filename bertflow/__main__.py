from bertflow.cli import main

main()
