from kerakp.cli import main

main()
