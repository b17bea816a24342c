"""Which queries cypher_query refuses before sending them, and how names are quoted."""

from __future__ import annotations

import pytest
from cua_neo4j.cypher import name, write_clauses


@pytest.mark.parametrize(
    ("query", "clauses"),
    [
        ("CREATE (n:Person {name: 'Ada'})", ["CREATE"]),
        ("match (n) detach delete n", ["DETACH", "DELETE"]),
        ("MERGE (a:A {id: 1}) ON CREATE SET a.t = 1", ["MERGE", "CREATE", "SET"]),
        ("MATCH (n) REMOVE n:Old", ["REMOVE"]),
        ("LOAD CSV FROM 'file:///x.csv' AS row RETURN row", ["LOAD"]),
        ("UNWIND [1] AS i FOREACH (x IN [i] | CREATE (:N))", ["FOREACH", "CREATE"]),
        ("DROP INDEX person_name", ["DROP"]),
        ("CALL { MATCH (n) SET n.x = 1 } IN TRANSACTIONS", ["SET", "CALL … IN TRANSACTIONS"]),
        ("MATCH (n)\n// a comment\nSET n.seen = true", ["SET"]),
    ],
)
def test_a_query_with_a_writing_clause_is_recognised(query: str, clauses: list[str]) -> None:
    assert write_clauses(query) == clauses


@pytest.mark.parametrize(
    "query",
    [
        "MATCH (n:Person) RETURN n.name ORDER BY n.name LIMIT 5",
        "MATCH (n {name: 'CREATE (x)'}) RETURN n",  # in a string
        'MATCH (n) WHERE n.note = "please delete me" RETURN n',
        "MATCH (n) RETURN n.set, n.delete, $create",  # properties and parameters
        "MATCH (n:Create)-[:SET|DELETE]->(m) RETURN m",  # a label and relationship types
        "RETURN {create: 1, merge: 2} AS m",  # map keys
        "MATCH (`CREATE`) RETURN `CREATE`",  # a quoted name
        "MATCH (n) /* SET n.x = 1 */ RETURN n",  # a comment
        "MATCH (n) WHERE n.name STARTS WITH 'A' RETURN count(n) AS created",
        "CALL db.labels() YIELD label RETURN label",
    ],
)
def test_a_read_only_query_passes(query: str) -> None:
    assert write_clauses(query) == []


def test_names_are_quoted_with_backticks_doubled() -> None:
    assert name("Person", "a label") == "`Person`"
    assert name("odd`name", "a label") == "`odd``name`"
    with pytest.raises(ValueError, match="a label must not be empty"):
        name(" ", "a label")
