"""``arquivo kb``: the knowledge store for RAG from the command line.

Texts are embedded with the default offline model (all-MiniLM-L6-v2); the backend is
the one the settings choose (``ARQUIVO_KNOWLEDGE_BACKEND``: native, or chroma at
``CHROMA_HOST`` / ``CHROMA_DB_PATH``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from arquivo.cli.context import err_console, out_console, print_json, state
from arquivo.errors import NotFoundError, ValidationError

__all__ = ["app"]

app = typer.Typer(
    help="Add documents to, and search, the RAG knowledge store.", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Collection = Annotated[str, typer.Argument(help="The collection's name (3-63 characters).")]


@app.command("add")
def add(
    ctx: typer.Context,
    collection: Collection,
    files: Annotated[list[Path], typer.Argument(help="Text files to add, one document each.")],
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", help="Most characters per chunk.")
    ] = 1000,
    overlap: Annotated[
        int, typer.Option("--overlap", help="Characters a chunk repeats from the previous one.")
    ] = 200,
    user: Annotated[
        str | None, typer.Option("--user", help="Whose documents these are (for forget).")
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Chunk, embed and store text files (the collection is created if needed).

    Each file is one document whose id is its path; adding a file again replaces it.
    """
    texts: list[tuple[Path, str]] = []
    for path in files:
        try:
            texts.append((path, path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationError(
                f"cannot read {path}: {exc}", hint="pass UTF-8 text files that exist"
            ) from exc
    added: list[dict[str, object]] = []
    with state(ctx).store() as store:
        knowledge = store.knowledge
        try:
            knowledge.collection(collection)
        except NotFoundError:
            knowledge.create_collection(collection)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            disable=json_,
        ) as progress:
            task = progress.add_task("embedding", total=len(texts))
            for path, text in texts:
                progress.update(task, description=f"embedding {path.name}")
                document = knowledge.add_document(
                    collection,
                    text,
                    document_id=str(path),
                    chunk_size=chunk_size,
                    overlap=overlap,
                    metadata={"source": path.name},
                    user_id=user,
                )
                added.append({"document": document.id, "chunks": len(document.chunk_ids)})
                progress.advance(task)
    if json_:
        print_json({"collection": collection, "documents": added})
        return
    chunks = sum(int(str(item["chunks"])) for item in added)
    typer.echo(f"added {len(added)} documents ({chunks} chunks) to {collection}")


@app.command("query")
def query(
    ctx: typer.Context,
    collection: Collection,
    text: Annotated[str, typer.Argument(help="What to search for.")],
    k: Annotated[int, typer.Option("-k", "--top", help="How many hits to show.")] = 5,
    json_: JsonOption = False,
) -> None:
    """Show the chunks closest in meaning to TEXT, best first."""
    with state(ctx).store() as store:
        hits = store.knowledge.query(collection, text, k=k)
    if json_:
        print_json(
            [
                {
                    "id": h.id,
                    "score": h.score,
                    "distance": h.distance,
                    "text": h.text,
                    "metadata": h.metadata,
                    "document_id": h.document_id,
                }
                for h in hits
            ]
        )
        return
    table = Table("score", "id", "text")
    for hit in hits:
        snippet = " ".join(hit.text.split())
        table.add_row(f"{hit.score:.3f}", hit.id, snippet[:160])
    out_console.print(table)


@app.command("list")
def list_(ctx: typer.Context, json_: JsonOption = False) -> None:
    """List the collections with their width, metric and size."""
    with state(ctx).store() as store:
        rows = [(info, store.knowledge.count(info.name)) for info in store.knowledge.collections()]
        note = store.knowledge.backend.search_note()
    if json_:
        print_json(
            [
                {
                    "name": info.name,
                    "dimensions": info.dimensions,
                    "metric": info.metric,
                    "embedder": info.embedder,
                    "chunks": count,
                }
                for info, count in rows
            ]
        )
        return
    table = Table("collection", "chunks", "dimensions", "metric", "embedder")
    for info, count in rows:
        table.add_row(
            info.name, str(count), str(info.dimensions or "-"), info.metric, info.embedder or "-"
        )
    out_console.print(table)
    if note:
        err_console.print(f"note: {note}")


@app.command("drop")
def drop(
    ctx: typer.Context,
    collection: Collection,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be deleted; delete nothing.")
    ] = False,
) -> None:
    """Delete a collection and every chunk in it."""
    with state(ctx).store() as store:
        count = store.knowledge.count(collection)
        if dry_run:
            typer.echo(f"would drop {collection} ({count} chunks)")
            return
        if not yes and not typer.confirm(f"drop {collection} and its {count} chunks?"):
            raise typer.Exit(1)
        store.knowledge.drop_collection(collection)
    typer.echo(f"dropped {collection} ({count} chunks)")


@app.command("enable-ann")
def enable_ann(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be converted; change nothing.")
    ] = False,
    json_: JsonOption = False,
) -> None:
    """Give a PostgreSQL database migrated without pgvector its HNSW indexes.

    Run after installing pgvector on the server (or after `arquivo import` into a
    database that has it, to build the indexes of the imported collections). In one
    transaction the embeddings are converted in place to pgvector's vector type (values
    kept exactly) and each collection gets an HNSW index; on failure nothing changes.
    Restart other processes using the database afterwards.
    """
    with state(ctx).store() as store:
        plan = store.knowledge.enable_ann(dry_run=True)
        if dry_run or not (plan.converted or plan.indexes):
            report = plan
        else:
            if not yes and not typer.confirm(
                f"convert {plan.chunks} embeddings to pgvector and index "
                f"{len(plan.indexes)} collections (the table is locked meanwhile)?"
            ):
                raise typer.Exit(1)
            report = store.knowledge.enable_ann()
    if json_:
        print_json(
            {
                "converted": report.converted,
                "chunks": report.chunks,
                "indexes": report.indexes,
                "dry_run": report.dry_run,
            }
        )
        return
    if not report.converted and not report.indexes:
        typer.echo("the embeddings are pgvector vectors, every collection indexed: nothing to do")
    elif not report.converted:
        verb = "would build" if report.dry_run else "built"
        typer.echo(f"{verb} the missing HNSW indexes on {', '.join(report.indexes)}")
    elif report.dry_run:
        typer.echo(
            f"would convert {report.chunks} embeddings and index "
            f"{', '.join(report.indexes) or 'no collections'}"
        )
    else:
        typer.echo(
            f"converted {report.chunks} embeddings; HNSW indexes on "
            f"{', '.join(report.indexes) or 'no collections'}"
        )
