"""How a FaissIndex answers a query: FAISS for candidates in each segment and the tail, exact scans where
they are cheaper, and the docstore for the documents. A mixin of FaissIndex, kept apart so that each
module reads in one sitting.

It reads the index's ``_segments`` (the parts, their dead rows, and how far they follow the docstore),
``_store``, ``_matches`` and the search settings. Every part is searched with the filter pushed into it,
and the parts' best are merged into an exact top k.
"""

from __future__ import annotations

import numpy as np

from embedkit.quantization import dequantize_int8
from integrations._shared.exact import top_k
from integrations.faiss import structures
from integrations.filters.parse import Node, filter_key
from integrations.records import Hit

FEW = 2048  # at most this many matching rows: an exact search over them beats a filtered ANN search


class FaissSearch:
    def _search(self, vectors, k, node: Node | None, with_vectors: bool) -> list[list[Hit]]:
        with self._lock:
            for _ in range(3):
                self._sync()
                found = [self._search_one(q, k, node) for q in vectors]
                records = self._store.records({f for hits in found for f, _ in hits}, codes=with_vectors)
                if all(f in records for hits in found for f, _ in hits):
                    break
                self._version = None  # another process deleted a hit meanwhile: catch up and search again
            return [self._hits([(f, s) for f, s in hits if f in records], records, with_vectors) for hits in found]

    def _hits(self, found: list[tuple[int, float]], records: dict, with_vectors: bool) -> list[Hit]:
        """Hits for (fid, score) pairs from their docstore ``records``, with their decoded vectors if asked."""
        hits = [Hit(*records[f][:3], s, span=records[f].span) for f, s in found]
        if with_vectors and hits:
            codes = self._store.code_array([(f, records[f].code) for f, _ in found], self._dtype, self.dimension)
            for hit, vector in zip(hits, self._decode(codes)):
                hit.vector = vector
        return hits

    def _search_one(self, q: np.ndarray, k: int, node: Node | None) -> list[tuple[int, float]]:
        segments = self._segments
        live, total = segments.live(), segments.total()
        if node is None:
            allowed, selector = None, segments.dead_selector()
            if live == 0:
                return []
        else:
            state = (segments.fid_w, segments.seq_w)
            match = self._matches.get(filter_key(node), state, self._run(node), self._touched)
            allowed = match.keys
            few = len(allowed) <= FEW or (self.kind == "flat" and len(allowed) * 8 <= total)
            if few:  # gathering the matching rows beats scanning them all
                return self._exact(q, k, allowed) if len(allowed) else []
            if "selector" not in match.derived:
                match.derived["selector"] = structures.bitmap(allowed, segments.fid_w)
            selector = match.derived["selector"]
        want = min(k, live if allowed is None else len(allowed))
        selectivity = (live if allowed is None else len(allowed)) / total
        query = self._as_faiss_query(q)
        found = [self._ann(part, query, k, selector, allowed, selectivity, total) for part in segments.parts]
        if self.precision != "float32" and self.rescore:  # the best candidates of all parts re-ranked in one go
            fids = np.sort(np.array([f for f, _ in best(k * self.rescore_multiplier, *found)], np.int64))
            rerank = self._exact_kept if self.precision == "ubinary" else self._exact  # (ubinary: all of them)
            found = rerank(q, k, fids) if len(fids) else []
        else:
            found = best(k, *found)
        return found if len(found) >= want else self._exact(q, k, allowed)

    def _run(self, node: Node):
        return lambda after, touched: self._store.matching(node, after, touched)

    def _touched(self, seq: int) -> np.ndarray:
        return self._store.dead_log_after(seq)[1]

    def _as_faiss_query(self, q: np.ndarray) -> tuple[np.ndarray, float, float]:
        """(the query as the FAISS structures take it, scale, offset): score / scale + offset is cosine
        (ubinary: the packed sign bits; its Hamming distances are turned into scores in ``_ann``)."""
        if self.precision == "ubinary":
            return np.packbits(q > 0)[None], 1.0, 0.0
        if self.precision == "int8":
            query, scale, offset = structures.int8_query(q, self._ranges)
            return query[None], scale, offset
        return q[None], 1.0, 0.0

    def _ann(
        self, part, query: tuple, k: int, selector, allowed, selectivity: float, rows: int
    ) -> list[tuple[int, float]]:
        """A part's FAISS candidates with their approximate scores (``k`` of them, or as many as ``rescore``
        re-ranks) for a query from ``_as_faiss_query``; ``rows`` is every part's rows together."""
        rescore = self.precision != "float32" and self.rescore
        fetch = min(part.n, k * (self.rescore_multiplier if rescore else 1))
        unselective = self.precision == "ubinary" and part.kind == "ivf"  # FAISS has no ID selector for it
        dead = self._segments.dead
        if unselective and selector is not None:
            fetch = min(part.n, int(fetch / selectivity) + len(dead))
        sel = None if unselective or selector is None else selector[0]
        params = structures.params(
            part.kind, self.precision, part.base, sel, fetch, selectivity, self.ef_search, self.nprobe, rows
        )
        vector, scale, offset = query
        scores, fids = part.index.search(vector, fetch, params=params)
        if self.precision == "ubinary":
            scores = 1.0 - 2.0 * scores[0].astype(np.float32) / self.dimension
        else:
            scores = scores[0] / scale + offset
        keep = fids[0] >= 0
        if unselective:
            keep &= ~np.isin(fids[0], dead) if allowed is None else np.isin(fids[0], allowed)
        fids, scores = fids[0][keep], scores[keep]
        return list(zip(fids.tolist(), scores.tolist()))[: fetch if rescore else k]

    def _exact(self, q: np.ndarray, k: int, fids: np.ndarray | None) -> list[tuple[int, float]]:
        """Exact scores over ``fids`` (every live row when None): gathered from the parts' own memory where
        their kind keeps one array (ubinary ranks by Hamming distance there, then re-ranks from the kept
        codes), else from the kept codes in the docstore."""
        if fids is None:
            return self._exact_kept(q, k, None)
        ids, rows, elsewhere = [], [], [fids[:0]]
        for part in self._segments.parts:
            inside = fids[(fids >= part.lo) & (fids <= part.hi)]
            view = structures.stored(part.index, part.base, part.kind, self.precision, self.dimension)
            if view is None:
                elsewhere.append(inside)
                continue
            pos = np.minimum(np.searchsorted(view[0], inside), len(view[0]) - 1)
            pos = pos[view[0][pos] == inside]
            ids.append(view[0][pos])
            rows.append(view[1][pos])
        found = self._exact_kept(q, k, np.concatenate(elsewhere)) if sum(map(len, elsewhere)) else []
        if not ids:
            return found
        ids, rows = np.concatenate(ids), np.concatenate(rows)
        if self.precision == "ubinary":
            distances = structures.hamming(rows, np.packbits(q > 0))
            fetch = k * (self.rescore_multiplier if self.rescore else 1)
            order = np.argsort(distances, kind="stable")[:fetch]
            if self.rescore:
                return best(k, found, self._exact_kept(q, k, np.sort(ids[order])))
            return best(k, found, [(int(ids[o]), 1.0 - 2.0 * float(distances[o]) / self.dimension) for o in order])
        vectors = rows if self.precision == "float32" else dequantize_int8(rows ^ np.int8(-128), self._ranges)
        scores, top = top_k(vectors, q[None], k)
        return best(k, found, list(zip(ids[top[0]].tolist(), scores[0].tolist())))

    def _exact_kept(self, q: np.ndarray, k: int, fids: np.ndarray | None) -> list[tuple[int, float]]:
        """Exact scores over the kept codes of ``fids`` (every live row when None), read from the docstore."""
        if fids is None:
            batches = self._store.rows_after(0, self._dtype, self.dimension)
        else:
            batches = [self._store.codes(fids, self._dtype, self.dimension)]
        found: list[tuple[int, float]] = []
        for batch_fids, codes in batches:
            scores, rows = top_k(self._decode(codes), q[None], k)
            found = best(k, found, list(zip(batch_fids[rows[0]].tolist(), scores[0].tolist())))
        return found


def best(k: int, *found: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """The ``k`` best (fid, score) pairs of several lists, best first (ties by fid)."""
    return sorted((pair for pairs in found for pair in pairs), key=lambda t: (-t[1], t[0]))[:k]
