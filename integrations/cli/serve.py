"""``embedkit serve``: load the model, open the indexes and run the server with uvicorn."""

from __future__ import annotations

import os
import sys

from embedkit._optional import missing


def api_key_of(args, environ=os.environ) -> str | None:
    """The key clients must send: ``--api-key``, else the first line of ``--api-key-file``, else
    ``EMBEDKIT_API_KEY``, else that of the file ``EMBEDKIT_API_KEY_FILE`` names; None for no key."""
    if args.api_key and args.api_key_file:
        raise ValueError("give --api-key or --api-key-file, not both")
    if args.api_key:
        return args.api_key
    path = args.api_key_file or (None if environ.get("EMBEDKIT_API_KEY") else environ.get("EMBEDKIT_API_KEY_FILE"))
    if not path:
        return environ.get("EMBEDKIT_API_KEY") or None
    what = "--api-key-file" if args.api_key_file else "EMBEDKIT_API_KEY_FILE"
    try:
        with open(path, encoding="utf-8") as file:
            key = file.readline().strip()
    except OSError as exc:
        raise ValueError(f"{what} {path}: {exc.strerror}") from None
    if not key:
        raise ValueError(f"{what} {path}: the file's first line is empty; put the key there")
    return key


def serve(args, load_model, targets: dict[str, str]) -> None:
    """Serve until SIGTERM or Ctrl-C: then no new connection is taken, every accepted request is answered
    (the work that has not started by ``--drain-timeout`` seconds later with a 503), and the process exits."""
    try:
        import uvicorn

        from integrations.server import DrainingServer, Limits, Service, create_app
    except ImportError as exc:
        raise missing(exc.name or "fastapi", "server", "embedkit serve") from exc
    from integrations.targets import open_store

    api_key = api_key_of(args)  # a missing key file fails before the model loads
    model = load_model()
    reranker = sparse = None
    if args.reranker:
        from embedkit import CrossEncoder

        reranker = CrossEncoder(args.reranker, device=args.device)
    if getattr(args, "sparse_model", None):  # embedkit demo --serve has none
        from embedkit import SparseEncoder

        sparse = SparseEncoder(args.sparse_model, device=args.device)
    indexes = {name: open_store(target, model, sparse, args.device) for name, target in targets.items()}
    limits = Limits(
        max_batch_tokens=args.max_batch_tokens,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        auto_truncate=args.auto_truncate,
        max_inputs=args.max_client_batch_size,
        max_body_bytes=args.max_body_bytes,
    )
    service = Service(model, args.model, reranker, args.reranker, indexes, limits, sparse, args.served_model_name)
    app = create_app(service, api_key=api_key, cors_origins=args.cors_origin or None)
    served = ", ".join(f"{name} ({len(index)} documents)" for name, index in indexes.items()) or "none"
    print(
        f"embedkit serve: http://{args.host}:{args.port}/ with {args.model}; indexes: {served}; "
        f"API key {'required' if api_key else 'not required'}",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info")
    DrainingServer(config, service, args.drain_timeout).run()
