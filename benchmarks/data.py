"""Readers for the evaluation sets in ../shared/data (STS Benchmark, SciFact in BEIR format)."""

from __future__ import annotations

import csv
import json
import pathlib


def sts_test(data: str) -> tuple[list[str], list[str], list[float]]:
    """STS Benchmark test pairs and gold scores."""
    s1, s2, gold = [], [], []
    with open(pathlib.Path(data) / "stsbenchmark" / "sts-test.tsv", encoding="utf8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            s1.append(row["sentence1"])
            s2.append(row["sentence2"])
            gold.append(float(row["score"]))
    return s1, s2, gold


def scifact(data: str) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """SciFact corpus ({id: title + " " + text}), test queries ({id: text}) and qrels ({qid: {doc_id: rel}})."""
    root = pathlib.Path(data) / "scifact"
    corpus = {}
    with open(root / "corpus.jsonl", encoding="utf8") as f:
        for line in f:
            doc = json.loads(line)
            corpus[doc["_id"]] = (doc.get("title", "") + " " + doc["text"]).strip()
    qrels: dict[str, dict[str, int]] = {}
    with open(root / "qrels" / "test.tsv", encoding="utf8") as f:
        next(f)
        for line in f:
            qid, did, score = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[did] = int(score)
    queries = {}
    with open(root / "queries.jsonl", encoding="utf8") as f:
        for line in f:
            q = json.loads(line)
            if q["_id"] in qrels:
                queries[q["_id"]] = q["text"]
    return corpus, queries, qrels
