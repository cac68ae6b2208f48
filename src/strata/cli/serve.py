"""``strata serve``: the HTTP API (and, later, the studio) over a store."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from strata.cli.main import StoreOpt, console, handle_errors, open_store


def _read_tokens(token_file: Optional[Path]) -> tuple[str, ...]:
    from strata.server.config import tokens_from_env
    from strata.server.errors import ServerConfigError

    if token_file is None:
        return tokens_from_env()
    try:
        lines = token_file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ServerConfigError(f"cannot read the token file {token_file}: {exc.strerror}") from None
    tokens = tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    if not tokens:
        raise ServerConfigError(f"{token_file} holds no token (one per line)")
    return tokens


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def serve(
        host: str = typer.Option("127.0.0.1", "--host", help="address to bind; anything but loopback needs a token"),
        port: int = typer.Option(8188, "--port", "-p", help="TCP port"),
        token_file: Optional[Path] = typer.Option(None, "--token-file", help="file with API tokens, one per line "
                                                  "(default: STRATA_API_TOKEN, comma-separated)"),
        workers: int = typer.Option(1, "--workers", "-w", help="jobs run at the same time"),
        cors_origin: list[str] = typer.Option([], "--cors-origin", help="allow this browser origin (repeatable; "
                                              "default: CORS off)"),
        allow_dir: list[Path] = typer.Option([], "--allow-dir", help="let remote workflows read files in this "
                                             "folder (repeatable; default: uploads only)"),
        max_upload_mb: float = typer.Option(32.0, "--max-upload-mb", help="largest upload, MB"),
        max_upload_mp: float = typer.Option(16.8, "--max-upload-mp", help="largest uploaded image, megapixels"),
        rate: float = typer.Option(20.0, "--rate", help="requests per second per token (sustained)"),
        burst: int = typer.Option(100, "--burst", help="requests per token allowed at once"),
        store: Optional[Path] = StoreOpt,
    ) -> None:
        """Serve the HTTP API: job queue, live events, assets, history, A1111 endpoints; docs at /docs."""
        from strata.server import ServerConfig, check_bind, serve as run_server

        tokens = _read_tokens(token_file)
        check_bind(host, tokens)
        config = ServerConfig(tokens=tokens, workers=workers, cors_origins=tuple(cors_origin),
                              allowed_file_dirs=tuple(d.resolve() for d in allow_dir),
                              max_upload_bytes=int(max_upload_mb * 2**20), max_upload_pixels=int(max_upload_mp * 1e6),
                              rate_per_s=rate, rate_burst=burst)
        console.print(f"strata serving on http://{host}:{port}  (docs: /docs, auth: "
                      f"{'token' if tokens else 'loopback only'})")
        run_server(open_store(store), host=host, port=port, config=config)
