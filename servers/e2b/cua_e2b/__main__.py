from cua_e2b.server import main

main()
