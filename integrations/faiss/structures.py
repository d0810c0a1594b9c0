"""The FAISS structures behind FaissIndex, one per kind and precision, and how each is searched.

Every structure is wrapped in an ``IDMap``, so FAISS ids are the docstore's fids (not an ``IDMap2``: nothing
looks a row up by its id, and reading one builds a hash map of every id). Segments written before are
``IDMap2`` and are read as they are. ``int8`` structures
hold the raw int8 codes (``QT_8bit_direct_signed``); ``ubinary`` ones hold the sign bits of the decoded
codes. ID selectors restrict a search to allowed fids on every kind but binary IVF, which FAISS cannot
filter: there the caller over-fetches and filters the candidates itself.
"""

from __future__ import annotations

import math

import faiss
import numpy as np

from embedkit.quantization import int8_steps


def new_index(kind: str, precision: str, d: int, n: int, hnsw_m: int, ef_construction: int, nlist: int | None):
    """(the IDMap wrapper, the structure inside it) for ``n`` expected rows."""
    ip = faiss.METRIC_INNER_PRODUCT
    nlist = nlist or max(1, min(int(np.sqrt(n)), n // 39 or 1))
    if precision == "ubinary":
        base = {
            "flat": lambda: faiss.IndexBinaryFlat(d),
            "hnsw": lambda: faiss.IndexBinaryHNSW(d, hnsw_m),
            "ivf": lambda: faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(d), d, nlist),
        }[kind]()
        if kind == "hnsw":
            base.hnsw.efConstruction = ef_construction
        return faiss.IndexBinaryIDMap(base), base
    if precision == "int8":
        qt = faiss.ScalarQuantizer.QT_8bit_direct_signed
        base = {
            "flat": lambda: faiss.IndexScalarQuantizer(d, qt, ip),
            "hnsw": lambda: faiss.IndexHNSWSQ(d, qt, hnsw_m, ip),
            "ivf": lambda: faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(d), d, nlist, qt, ip),
        }[kind]()
    else:
        base = {
            "flat": lambda: faiss.IndexFlatIP(d),
            "hnsw": lambda: faiss.IndexHNSWFlat(d, hnsw_m, ip),
            "ivf": lambda: faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, ip),
        }[kind]()
    if kind == "ivf":
        base.cp.min_points_per_centroid = 1  # small corpora train a few centroids, quietly
    if kind == "hnsw":
        base.hnsw.efConstruction = ef_construction
    return faiss.IndexIDMap(base), base


def fids_of(index) -> np.ndarray:
    """The fids in a structure, in its internal order: a view of FAISS's memory, valid while ``index`` is."""
    return faiss.rev_swig_ptr(index.id_map.data(), index.ntotal) if index.ntotal else np.zeros(0, np.int64)


def bitmap(fids: np.ndarray, top: int):
    """An ID selector for ``fids`` (with the buffer it reads, which must stay alive)."""
    bits = np.zeros(top + 1, dtype=bool)
    bits[fids[fids <= top]] = True
    packed = np.packbits(bits, bitorder="little")
    return faiss.IDSelectorBitmap(top + 1, faiss.swig_ptr(packed)), packed


def exclude(fids: np.ndarray, top: int):
    """An ID selector for every fid but ``fids`` (with what it holds on to)."""
    inner = bitmap(fids, top)
    return faiss.IDSelectorNot(inner[0]), inner


def params(
    kind: str, precision: str, base, sel, fetch: int, selectivity: float, ef_search: int, nprobe: int | None, rows: int
):
    """Search parameters: HNSW explores more as fewer rows qualify; an IVF segment probes the share of its
    lists that ``nprobe`` is of sqrt(``rows``), the lists of one IVF over all the index's rows."""
    if kind == "hnsw":
        ef = min(max(ef_search, fetch, int(fetch / max(selectivity, 1e-9))), 4096)
        return faiss.SearchParametersHNSW(sel=sel, efSearch=ef)
    if kind == "ivf":
        share = max(16, base.nlist // 3) if nprobe is None else nprobe * base.nlist / max(base.nlist, rows**0.5)
        probes = min(base.nlist, math.ceil(share))
        if precision == "ubinary":
            base.nprobe = probes
            return None
        return faiss.SearchParametersIVF(sel=sel, nprobe=probes)
    return None if sel is None else faiss.SearchParameters(sel=sel)


def int8_query(q: np.ndarray, ranges: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(query, scale, offset) with FAISS score / scale + offset = q·decode(codes) for int8 structures.

    They hold the raw codes c, and q·decode(c) = (q*step)·c + q·(128.5*step + start). FAISS also rounds
    the query to int8 for these codes, so it is scaled to fill that range; the approximate scores are
    then re-ranked exactly when ``rescore`` is on.
    """
    start, step = int8_steps(ranges)
    weighted = q * step
    scale = 127.0 / max(float(np.abs(weighted).max()), 1e-30)
    return (weighted * scale).astype(np.float32), scale, float(q @ (128.5 * step + start))


POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)


def stored(index, base, kind: str, precision: str, d: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(fids, rows) over FAISS's own memory, zero-copy, for kinds that keep one contiguous array: float32
    vectors, int8 codes, or packed sign bits. None for IVF. Fids are ascending: rows are only appended,
    in fid order."""
    if kind == "ivf":
        return None
    storage = base if kind == "flat" else base.storage
    storage = faiss.downcast_IndexBinary(storage) if precision == "ubinary" else faiss.downcast_index(storage)
    n = index.ntotal
    fids = fids_of(index)
    if precision == "float32":
        return fids, faiss.rev_swig_ptr(storage.get_xb(), n * d).reshape(n, d)
    if precision == "int8":  # QT_8bit_direct_signed keeps code + 128 as a byte
        return fids, faiss.rev_swig_ptr(storage.codes.data(), n * d).reshape(n, d).view(np.int8)
    return fids, faiss.rev_swig_ptr(storage.xb.data(), n * d // 8).reshape(n, d // 8)


def hamming(bits: np.ndarray, query_bits: np.ndarray) -> np.ndarray:
    return POPCOUNT[np.bitwise_xor(bits, query_bits)].sum(axis=1)
