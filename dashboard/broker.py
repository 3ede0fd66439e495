"""The embedded default's broker: messages as files in a folder under var/, written whole and held until acked.

kombu's own filesystem transport creates a message file and then writes it, so a consumer listing the folder in
between reads an empty or partial file; the JSON error that follows stops the Celery worker ("Unrecoverable
error"). It also deletes a message as it reads it, so a worker killed before finishing a task loses the message.

This transport keeps kombu's folder layout and fixes both:
- a message is written under a name no consumer takes (`.<name>.part`) and renamed into place once whole, so a
  consumer only ever sees complete files;
- a consumer claims a message by renaming it into a folder of its own process (`claimed/<pid>-<start>/`), and
  deletes it only when the message is acked; a message rejected for requeue, or not acked at a warm shutdown, goes
  back to the queue. Claims whose process is gone (killed, crashed) are put back in the queue by the next process
  that opens a channel on the folder, and by consumers every few seconds while they poll.
- a file that is not a message (damaged on disk, or put there by hand) is moved to `rejected/` and logged,
  instead of stopping the worker; a folder that cannot be read or written is a broker that is down, which a worker
  waits out (reconnecting) instead of stopping.
"""

import contextlib
import logging
import os
import threading
import time
import uuid
from queue import Empty
from typing import ClassVar

from kombu.transport import filesystem, virtual
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)

# How often a polling consumer looks for claims of processes that are gone.
ORPHAN_SWEEP_SECONDS = 5.0


def process_key(pid: int) -> str | None:
    """`<pid>-<start time>` for a live process (the start time tells a reused pid apart), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc: the pid alone, if a process has it
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return str(pid)
    # fields[0] is the state (after the command in parentheses); a zombie has finished. fields[19] is its start time.
    if fields[0] == b"Z":
        return None
    return f"{pid}-{fields[19].decode()}"


# The messages this process has claimed and not yet settled, by delivery tag, whichever channel claimed them: a claim
# file in this process's folder that is not here belongs to nobody (its channel closed without putting it back).
_claims: dict[str, str] = {}
_claims_lock = threading.Lock()


class QoS(virtual.QoS):
    """Acks and rejects also settle the message's claimed file."""

    channel: "Channel"

    def ack(self, delivery_tag):
        super().ack(delivery_tag)
        self.channel.settle(delivery_tag)

    def reject(self, delivery_tag, requeue=False):
        # A requeued message is put back by `_restore`, claim and all; settling it again here could remove the claim
        # of a consumer that has taken it since (it keeps its delivery tag).
        super().reject(delivery_tag, requeue=requeue)
        if not requeue:
            self.channel.settle(delivery_tag)


class Channel(filesystem.Channel):
    QoS = QoS

    def __init__(self, connection, **kwargs):
        super().__init__(connection, **kwargs)
        options = connection.client.transport_options
        root = os.path.dirname(os.path.abspath(self.data_folder_in))
        self.claimed_root = options.get("claimed_folder") or os.path.join(root, "claimed")
        self.rejected_folder = options.get("rejected_folder") or os.path.join(root, "rejected")
        for folder in (self.data_folder_in, self.data_folder_out, self.claimed_root, self.rejected_folder):
            os.makedirs(folder, exist_ok=True)
        os.makedirs(self.control_folder, exist_ok=True)
        self._no_ack_queues: set[str] = set()
        # Each queue's messages as last listed, oldest first: a consumer lists the folder again only when it has
        # tried them all, not once per message (a backlog of n would cost n listings).
        self._listed: dict[str, list[str]] = {}
        self._own_key = process_key(os.getpid()) or str(os.getpid())
        self._swept_at = 0.0
        self.restore_orphans()

    @property
    def claim_folder(self) -> str:
        # Made on first claim, so that publishers (web processes, beat) leave no empty folders behind.
        folder = os.path.join(self.claimed_root, self._own_key)
        os.makedirs(folder, exist_ok=True)
        return folder

    def _put(self, queue, payload, **kwargs):  # type: ignore[override]  # stubs: its two bases name it apart
        # Zero-padded wall-clock nanoseconds first: names sort in the order they were sent, across processes.
        name = f"{time.time_ns():020d}_{uuid.uuid4().hex}.{queue}.msg"
        part = os.path.join(self.data_folder_out, f".{name}.part")
        with open(part, "wb") as f:
            f.write(dumps(payload).encode())
        os.replace(part, os.path.join(self.data_folder_out, name))

    def _get(self, queue, timeout=None):
        if time.monotonic() - self._swept_at > ORPHAN_SWEEP_SECONDS:
            self.restore_orphans()
        suffix = f".{queue}.msg"
        listed = self._listed.get(queue)
        if not listed:
            names = os.listdir(self.data_folder_in)
            listed = self._listed[queue] = sorted(n for n in names if n.endswith(suffix) and not n.startswith("."))
        folder = self.claim_folder
        while listed:
            name = listed.pop(0)
            claimed = os.path.join(folder, name)
            with _claims_lock:
                try:
                    os.rename(os.path.join(self.data_folder_in, name), claimed)
                except FileNotFoundError:
                    continue  # another consumer claimed it first
                try:
                    with open(claimed, "rb") as f:
                        payload = loads(f.read())
                    tag = payload["properties"]["delivery_tag"]
                except (ValueError, TypeError, KeyError, UnicodeDecodeError):
                    os.replace(claimed, os.path.join(self.rejected_folder, name))
                    log.error("broker: %s is not a message; moved to %s", name, self.rejected_folder)
                    continue
                _claims[tag] = claimed
            if queue in self._no_ack_queues:
                # Nobody will ack it (broadcast control messages): it is done once read.
                self.settle(tag)
            return payload
        raise Empty()

    def basic_consume(self, queue, no_ack, callback, consumer_tag, **kwargs):
        if no_ack:
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)

    def basic_get(self, queue, no_ack=False, **kwargs):
        message = super().basic_get(queue, no_ack=no_ack, **kwargs)
        if message is not None and no_ack:
            self.settle(message.delivery_tag)
        return message

    def settle(self, delivery_tag) -> None:
        """The message is acked or dropped: its claimed file goes."""
        with _claims_lock:
            claimed = _claims.pop(delivery_tag, None)
        if claimed is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(claimed)

    def _restore(self, message):
        """Put a message this process claimed back in the queue by renaming its claim (under its first name, so in
        its first place, and never twice); one it did not claim is written again, as kombu does."""
        with _claims_lock:
            claimed = _claims.pop(message.delivery_tag, None)
        if claimed is None:
            super()._restore(message)
            return
        try:
            os.rename(claimed, os.path.join(self.data_folder_in, os.path.basename(claimed)))
        except OSError as exc:
            # The broker is down (its folder cannot be written): the claim stays in this process's folder, held by
            # no channel now, where the next sweep puts it back.
            log.warning("broker: a message stays claimed until the queue is back (%s)", type(exc).__name__)

    def restore_orphans(self) -> int:
        """Put back in the queue the messages claimed by processes that are gone, and those of this process that no
        channel holds any more; how many."""
        self._swept_at = time.monotonic()
        restored = 0
        try:
            owners = os.listdir(self.claimed_root)
        except FileNotFoundError:
            return 0
        for owner in owners:
            pid, _, _ = owner.partition("-")
            mine = owner == self._own_key
            if not pid.isdigit() or (not mine and process_key(int(pid)) == owner):
                continue
            folder = os.path.join(self.claimed_root, owner)
            with _claims_lock:
                held = set(_claims.values()) if mine else set()
                for name in os.listdir(folder):
                    path = os.path.join(folder, name)
                    if path in held:
                        continue
                    try:
                        os.rename(path, os.path.join(self.data_folder_in, name))
                        restored += 1
                    except FileNotFoundError:
                        continue  # another process restored it first
            if not mine:
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
        if restored:
            log.warning("broker: %d message(s) claimed by a stopped process or a closed channel put back", restored)
        return restored


class Transport(filesystem.Transport):
    Channel = Channel
    # A folder that cannot be read or written (a full disk, a permission, the folder gone) is the broker being down:
    # a worker reconnects until it is back, and a sender's retry policy applies, instead of the worker stopping.
    connection_errors = (*filesystem.Transport.connection_errors, OSError)
    # kombu keeps one record of declared bindings per process for every folder; a binding declared on one folder
    # would then never be written to the control folder of another (tests and benchmarks open several).
    states_by_folder: ClassVar[dict[str, virtual.BrokerState]] = {}

    def __init__(self, client, **kwargs):
        super().__init__(client, **kwargs)
        folder = os.path.abspath(client.transport_options.get("control_folder", "control"))
        self.state = self.states_by_folder.setdefault(folder, virtual.BrokerState())
