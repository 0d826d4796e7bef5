"""Attachments into the chat's workspace: ``<workspace>/inbox/<chat id>/<message id>-<name>``.

Pure: a safe file name, the attachment's path, and whether it fits under
``telegram.attachment_max_bytes`` (``safe_name``, ``planned``).  The shell,
``save``, fetches the file (a Telegram download, the console's copy) into a
hidden part file of its own and renames it into place once whole, so a file
at an attachment's path is always complete: a message read again (live and
in history, after a restart) finds it there and does not fetch it again, and
two readers of one message at once never write into the same file.  A fetch
that fails is recorded in the attachment (``skipped``); the message goes on
without the file.

The chat id is part of the path because workspaces are shared (every chat
without its own uses the default one) and Telegram message ids repeat across
chats: with ``inbox/<message id>-<name>`` alone, a file already there could be
another chat's, and would be taken for this one's.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import stat
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from schemas.events import Attachment, MessageReceived
from valor.render import size as size_text

from . import logs

INBOX = "inbox"
NAME_BYTES = 120  # the file system allows 255; the id prefix and the part suffix need some
EXT_CHARS = 16
SAFE_PUNCTUATION = frozenset("._-+@=,")  # nothing a shell would read as syntax or a glob

Fetch = Callable[[Path], Awaitable[None]]  # writes the whole file at the given path


def safe_name(name: str | None, fallback: str) -> str:
    """A name that stays in the inbox and reads plainly in a prompt or a shell line.

    Only its last path component is kept; anything but letters, digits and a
    little punctuation becomes ``_`` (separators, spaces, quotes, ``$``, control
    characters); leading dots go.  Long names are cut, keeping the extension.
    """
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    base = "".join(c if c.isalnum() or c in SAFE_PUNCTUATION else "_" for c in base).lstrip(".")
    if len(base.encode()) > NAME_BYTES:
        stem, ext = os.path.splitext(base)
        ext = ext[:EXT_CHARS]
        stem = stem.encode()[:NAME_BYTES - len(ext.encode())].decode(errors="ignore")
        base = stem + ext
    return base or fallback


def inbox_path(chat_id: int, message_id: int, name: str) -> str:
    """Relative to the workspace; the same message always gets the same path."""
    return f"{INBOX}/{chat_id}/{message_id}-{name}"


def too_big(size: int, max_bytes: int) -> str:
    have, limit = size_text(size), size_text(max_bytes)
    if have == limit:  # just over: rounded, both would read the same
        have, limit = f"{size:,} bytes", f"{max_bytes:,} bytes"
    return f"too big: {have}, the limit is {limit}"


def planned(chat_id: int, message_id: int, name: str, size: int | None, mime_type: str,
            max_bytes: int) -> Attachment:
    """The attachment to fetch, or one already skipped because it is over the cap."""
    if size is not None and size > max_bytes:
        return Attachment(name=name, size=size, mime_type=mime_type, skipped=too_big(size, max_bytes))
    return Attachment(name=name, path=inbox_path(chat_id, message_id, name), size=size, mime_type=mime_type)


async def save(att: Attachment, workspace: str | os.PathLike, fetch: Fetch, max_bytes: int) -> Attachment:
    """Fetch the file into its path unless it is there; the attachment as it ended."""
    if not att.path:
        return att
    dest = Path(workspace) / att.path
    if dest.is_file():  # only whole files are renamed into place
        return msgspec.structs.replace(att, size=dest.stat().st_size)
    part = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        await fetch(part)
        got = part.stat().st_size
        if got > max_bytes:  # its size was not announced, or was announced wrong
            return msgspec.structs.replace(att, path="", size=got, skipped=too_big(got, max_bytes))
        os.replace(part, dest)
        return msgspec.structs.replace(att, size=got)
    except Exception as exc:
        return msgspec.structs.replace(att, path="", skipped=f"not saved: {type(exc).__name__}: {exc}")
    finally:
        part.unlink(missing_ok=True)  # gone already once renamed into place


async def save_all(msg: MessageReceived, workspace: str | os.PathLike, fetch: Fetch,
                   max_bytes: int) -> MessageReceived:
    """The message with every attachment saved (or its reason not to be), each told in the log."""
    saved = []
    for att in msg.attachments:
        ended = await save(att, workspace, fetch, max_bytes)
        if ended.skipped:
            logs.warning("ingest.attachment_skipped", chat_id=msg.chat_id, message=msg.message_id,
                         name=ended.name, size=ended.size, reason=ended.skipped)
        else:
            logs.info("ingest.attachment_saved", chat_id=msg.chat_id, message=msg.message_id,
                      path=ended.path, size=ended.size)
        saved.append(ended)
    return msgspec.structs.replace(msg, attachments=saved)


# --- the console's /attach: a local file instead of a download ----------------------------------


def local_file(chat_id: int, message_id: int, source: str, max_bytes: int) -> tuple[Attachment, Fetch]:
    """The attachment for a local file and its copy; OSError when it is no regular file to read.

    Only regular files: a device or a pipe has no size to cap and may never end.
    """
    if not os.path.isabs(source):
        raise OSError("not an absolute path")
    info = os.stat(source)
    if not stat.S_ISREG(info.st_mode):
        raise OSError("not a regular file")
    if not os.access(source, os.R_OK):
        raise PermissionError("not readable")
    name = safe_name(os.path.basename(source), "file")
    mime = mimetypes.guess_type(name)[0] or "application/octet-stream"

    async def copy(part: Path) -> None:  # one byte over the cap is enough to refuse a file that grew
        await asyncio.to_thread(_copy, source, part, max_bytes + 1)

    return planned(chat_id, message_id, name, info.st_size, mime, max_bytes), copy


def _copy(source: str, dest: Path, limit: int) -> None:
    with open(source, "rb") as src, open(dest, "wb") as out:
        while limit > 0 and (chunk := src.read(min(1 << 20, limit))):
            out.write(chunk)
            limit -= len(chunk)
