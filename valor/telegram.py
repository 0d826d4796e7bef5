"""The Telegram account Valor runs as: where its credentials and session files come from.

Credentials: ``VALOR_TG_API_ID``, ``VALOR_TG_API_HASH`` and either
``VALOR_TG_PHONE`` (a user account) or ``VALOR_TG_BOT_TOKEN`` (a bot), from the
environment or ``.env``.  Each process has its own session file under
``var/sessions/`` (0600), created by ``make login``.  Ingest reads through the
account and the notifier writes through it, so it lives here, below both, like
``bus.py`` for NATS.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SESSIONS = Path("var/sessions")


@dataclass(frozen=True)
class Credentials:
    api_id: int
    api_hash: str
    phone: str | None = None
    bot_token: str | None = None

    @property
    def bot(self) -> bool:
        return self.bot_token is not None


def load_dotenv(path: str | os.PathLike = ".env") -> None:
    """``KEY=value`` lines into the environment; what is already set wins.

    The file holds secrets: one readable by others is made 0600 first.
    """
    try:
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)
        lines = Path(path).read_text().splitlines()
    except OSError:
        return
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        os.environ.setdefault(key.strip(), value)


def credentials(env: dict[str, str] | None = None) -> Credentials | None:
    """None when no Telegram account is configured: Valor then talks over the console."""
    if env is None:
        load_dotenv()
        env = dict(os.environ)
    api_id, api_hash = env.get("VALOR_TG_API_ID", "").strip(), env.get("VALOR_TG_API_HASH", "").strip()
    if not api_id or not api_hash:
        return None
    if not api_id.isdigit():
        raise ValueError("VALOR_TG_API_ID: must be a number (from my.telegram.org)")
    phone = env.get("VALOR_TG_PHONE", "").strip() or None
    token = env.get("VALOR_TG_BOT_TOKEN", "").strip() or None
    if not phone and not token:
        raise ValueError("set VALOR_TG_PHONE (user account) or VALOR_TG_BOT_TOKEN (bot)")
    return Credentials(int(api_id), api_hash, phone, None if phone else token)


def session_file(name: str, directory: Path = SESSIONS) -> Path:
    """``var/sessions/<name>.session``, created 0600 in a 0700 directory; one per process."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{name}.session"
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)
    return path


def telethon_client(creds: Credentials, name: str, receive_updates: bool = True):
    from telethon import TelegramClient

    session = session_file(name)
    return TelegramClient(
        str(session.with_suffix("")), creds.api_id, creds.api_hash,
        catch_up=receive_updates, receive_updates=receive_updates,
        flood_sleep_threshold=0,  # every flood wait comes to us, to be waited out where it happened
        auto_reconnect=True, connection_retries=-1, retry_delay=2,
    )


async def login(creds: Credentials, name: str) -> str:
    """Interactive: ask for the code (and 2FA password) on the terminal."""
    client = telethon_client(creds, name, receive_updates=False)
    if creds.bot:
        await client.start(bot_token=creds.bot_token)
    else:
        await client.start(phone=creds.phone)
    me = await client.get_me()
    await client.disconnect()
    return f"{name}: logged in as {me.username or me.first_name} (id {me.id}{', bot' if me.bot else ''})"
