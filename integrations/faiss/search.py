"""How a FaissIndex answers a query: FAISS for candidates, exact scans where they are cheaper, and the
docstore for the documents. A mixin of FaissIndex, kept apart so that each module reads in one sitting.

It reads the index's state: ``_index``/``_base`` (the FAISS structure), ``_dead`` (tombstoned fids),
``_fid_w``/``_seq_w`` (how far the structure follows the docstore), ``_store``, ``_matches`` and the
search settings.
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
        live = self._live()
        if node is None:
            allowed, selector = None, self._dead_selector()
            if live == 0:
                return []
        else:
            match = self._matches.get(filter_key(node), (self._fid_w, self._seq_w), self._run(node), self._touched)
            allowed = match.keys
            few = len(allowed) <= FEW or (self.kind == "flat" and len(allowed) * 8 <= self._index.ntotal)
            if few:  # gathering the matching rows beats scanning them all
                return self._exact(q, k, allowed) if len(allowed) else []
            if self.kind == "flat" and self.precision == "float32":
                return self._flat_filtered(q, k, match)
            if "selector" not in match.derived:
                match.derived["selector"] = structures.bitmap(allowed, self._fid_w)
            selector = match.derived["selector"]
        want = min(k, live if allowed is None else len(allowed))
        found = self._ann(q, k, selector, allowed, (live if allowed is None else len(allowed)) / self._index.ntotal)
        return found if len(found) >= want else self._exact(q, k, allowed)

    def _flat_filtered(self, q: np.ndarray, k: int, match) -> list[tuple[int, float]]:
        """Exact filtered search as one masked product over FAISS's flat storage: FAISS's per-row ID
        selector check costs several times an unfiltered search there."""
        fids, vectors = structures.stored(self._index, self._base, self.kind, self.precision, self.dimension)
        if match.derived.get("mask_n") != len(fids):
            match.derived["mask"], match.derived["mask_n"] = np.isin(fids, match.keys), len(fids)
        scores, rows = top_k(vectors, q[None], k, match.derived["mask"])
        return list(zip(fids[rows[0]].tolist(), scores[0].tolist()))

    def _run(self, node: Node):
        return lambda after, touched: self._store.matching(node, after, touched)

    def _touched(self, seq: int) -> np.ndarray:
        return self._store.dead_after(seq)

    def _dead_selector(self):
        if not len(self._dead):
            return None
        if self._not_dead is None:
            self._not_dead = structures.exclude(self._dead, self._fid_w)
        return self._not_dead

    def _ann(self, q: np.ndarray, k: int, selector, allowed, selectivity: float) -> list[tuple[int, float]]:
        """FAISS candidates (re-ranked exactly from the kept codes when ``rescore``), best first."""
        rescore = self.precision != "float32" and self.rescore
        fetch = min(self._index.ntotal, k * (self.rescore_multiplier if rescore else 1))
        unselective = self.precision == "ubinary" and self.kind == "ivf"  # FAISS has no ID selector for it
        if unselective and selector is not None:
            fetch = min(self._index.ntotal, int(fetch / selectivity) + len(self._dead))
        sel = None if unselective or selector is None else selector[0]
        params = structures.params(
            self.kind, self.precision, self._base, sel, fetch, selectivity, self.ef_search, self.nprobe
        )
        if self.precision == "ubinary":
            distances, fids = self._index.search(np.packbits(q > 0)[None], fetch, params=params)
            scores = 1.0 - 2.0 * distances[0].astype(np.float32) / self.dimension
        else:
            query, scale, offset = structures.int8_query(q, self._ranges) if self.precision == "int8" else (q, 1, 0)
            scores, fids = self._index.search(query[None], fetch, params=params)
            scores = scores[0] / scale + offset
        keep = fids[0] >= 0
        if unselective:
            keep &= ~np.isin(fids[0], self._dead) if allowed is None else np.isin(fids[0], allowed)
        fids, scores = fids[0][keep], scores[keep]
        if rescore and len(fids):  # int8 codes are in FAISS's memory; ubinary ones in the docstore
            return self._exact(q, k, np.sort(fids))
        return list(zip(fids.tolist(), scores.tolist()))[:k]

    def _exact(self, q: np.ndarray, k: int, fids: np.ndarray | None) -> list[tuple[int, float]]:
        """Exact scores over ``fids`` (every live row when None): from FAISS's own memory where the kind
        keeps one array (ubinary ranks by Hamming distance there, then re-ranks from the kept codes), else
        from the kept codes in the docstore."""
        view = None
        if fids is not None and self._index is not None and self._index.ntotal:
            view = structures.stored(self._index, self._base, self.kind, self.precision, self.dimension)
        if view is None:
            return self._exact_kept(q, k, fids)
        ids, rows = view
        pos = np.minimum(np.searchsorted(ids, fids), len(ids) - 1)
        pos = pos[ids[pos] == fids]
        if self.precision == "ubinary":
            distances = structures.hamming(rows[pos], np.packbits(q > 0))
            fetch = k * (self.rescore_multiplier if self.rescore else 1)
            best = pos[np.argsort(distances, kind="stable")[:fetch]]
            if self.rescore:
                return self._exact_kept(q, k, np.sort(ids[best]))
            return [(int(ids[b]), 1.0 - 2.0 * float(d) / self.dimension) for b, d in zip(best, np.sort(distances)[:k])]
        vectors = rows[pos] if self.precision == "float32" else dequantize_int8(rows[pos] ^ np.int8(-128), self._ranges)
        scores, found = top_k(vectors, q[None], k)
        return list(zip(ids[pos[found[0]]].tolist(), scores[0].tolist()))

    def _exact_kept(self, q: np.ndarray, k: int, fids: np.ndarray | None) -> list[tuple[int, float]]:
        """Exact scores over the kept codes of ``fids`` (every live row when None), read from the docstore."""
        if fids is None:
            batches = list(self._store.rows_after(0, self._dtype, self.dimension))
        else:
            batches = [self._store.codes(fids, self._dtype, self.dimension)]
        found: list[tuple[int, float]] = []
        for batch_fids, codes in batches:
            scores, rows = top_k(self._decode(codes), q[None], k)
            found = sorted(found + list(zip(batch_fids[rows[0]].tolist(), scores[0].tolist())), key=lambda t: -t[1])[:k]
        return found
