"""The index endpoints: ``/v1/indexes`` and, per served index, search, add, get and delete."""

from __future__ import annotations

from fastapi import APIRouter

from integrations._shared.facts import metadata_fields
from integrations._shared.hit_view import as_json
from integrations.server import schemas
from integrations.server.service import APIError, Service

FIELD_SAMPLE = 1000  # documents the field list is read from


def index_routes(service: Service) -> APIRouter:
    router = APIRouter(prefix="/v1/indexes")

    @router.get("")
    async def listing():
        return {"object": "list", "data": [await _describe(service, name) for name in sorted(service.indexes)]}

    @router.get("/{name}")
    async def describe(name: str):
        return await _describe(service, name)

    @router.get("/{name}/fields")
    async def fields(name: str):
        """The metadata fields a filter can name, from the first ``FIELD_SAMPLE`` documents (in id order)."""
        index = service.index(name)
        records = await service.read(name, index.get, limit=FIELD_SAMPLE)
        return {"object": "list", "sampled": len(records), "data": metadata_fields(records)}

    @router.post("/{name}/search")
    async def search(name: str, body: schemas.Search):
        index = service.index(name)
        rerank = None
        if body.rerank:
            if service.reranker is None:
                raise APIError(400, "rerank needs a reranker: start the server with --reranker MODEL", param="rerank")
            rerank = service.reranker
        hits = await service.read(
            name,
            index.search,
            body.query,
            k=body.k,
            filter=body.filter,
            mode=body.mode,
            weights=body.weights,
            rerank=rerank,
            rerank_candidates=body.rerank_candidates,
        )
        return {"object": "list", "data": [as_json(h, body.include_text) for h in hits]}

    @router.post("/{name}/add")
    async def add(name: str, body: schemas.Add):
        index = service.index(name)
        docs = body.documents
        if len(docs) > service.limits.max_inputs:
            raise APIError(
                413, f"documents holds {len(docs)} documents; at most {service.limits.max_inputs} per request"
            )
        given = [d.id is not None for d in docs]
        if any(given) and not all(given):
            raise APIError(400, "give every document an id, or none (then the index makes them)", param="documents")
        ids = [d.id for d in docs] if all(given) else None
        added = await service.write(name, index.add, [d.text for d in docs], [d.metadata or {} for d in docs], ids)
        return {"ids": added}

    @router.post("/{name}/get")
    async def get(name: str, body: schemas.Get):
        index = service.index(name)
        records = await service.read(
            name, index.get, body.ids, filter=body.filter, limit=body.limit, offset=body.offset
        )
        return {"object": "list", "data": [_record(r) for r in records]}

    @router.post("/{name}/delete")
    async def delete(name: str, body: schemas.Delete):
        index = service.index(name)
        if body.ids is None and body.filter is None:
            raise APIError(400, "delete needs ids, a filter or both")
        return {"deleted": await service.write(name, index.delete, body.ids, filter=body.filter)}

    return router


async def _describe(service: Service, name: str) -> dict:
    index = service.index(name)
    count = await service.read(name, len, index)
    return {
        "name": name,
        "count": count,
        "model": index.encoder_info["model"],
        "dimension": index.dimension,
        "prompts": index.encoder_info["prompts"],
        "store": type(index).__name__,  # not its URL or path, which are the server's business
        "modes": ["vector", "keyword", *(["sparse"] if index.sparse.encoder is not None else []), "hybrid"],
        "rerank": service.reranker is not None,
    }


def _record(record) -> dict:
    return {"id": record.id, "text": record.text, "metadata": record.metadata}
