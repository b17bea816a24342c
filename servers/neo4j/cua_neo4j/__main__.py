from cua_neo4j.server import main

main()
