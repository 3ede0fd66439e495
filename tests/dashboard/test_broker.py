"""The embedded default's broker (dashboard/broker.py), in real processes: whole messages, none lost to a kill."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kombu import Connection

ROOT = Path(__file__).resolve().parents[2]
TRANSPORT = "dashboard.broker:Transport"


def options(folder: Path) -> dict:
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
        "claimed_folder": str(folder / "claimed"),
        "rejected_folder": str(folder / "rejected"),
        "polling_interval": 0.01,
    }


def connection(folder: Path) -> Connection:
    return Connection("filesystem://", transport=TRANSPORT, transport_options=options(folder))


# A process of its own that uses the broker: argv[1] is the folder, argv[2] what to do.
CLIENT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from kombu import Connection
    from tests.dashboard.test_broker import TRANSPORT, options

    folder, action = Path(sys.argv[1]), sys.argv[2]
    with Connection("filesystem://", transport=TRANSPORT, transport_options=options(folder)) as conn:
        queue = conn.SimpleQueue("work")
        if action == "take-and-hang":
            message = queue.get(timeout=10)
            print(json.dumps(message.payload), flush=True)
            time.sleep(60)
        elif action.startswith("publish:"):
            _, who, count = action.split(":")
            for n in range(int(count)):
                queue.put({"who": who, "n": n, "pad": "x" * 2000})
        elif action.startswith("drain:"):
            # Until the queue has been empty for a while after the first message, within a bound.
            deadline = time.monotonic() + float(action.split(":")[1])
            seen, idle_since = [], None
            while time.monotonic() < deadline and (idle_since is None or time.monotonic() - idle_since < 5):
                try:
                    message = queue.get(timeout=0.5)
                except queue.Empty:
                    if seen and idle_since is None:
                        idle_since = time.monotonic()
                    continue
                idle_since = None
                seen.append(f"{message.payload['who']}:{message.payload['n']}")
                message.ack()
            print(json.dumps(seen), flush=True)
    """
)


def start(folder: Path, action: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(folder), action], cwd=ROOT, text=True, start_new_session=True, **kwargs
    )


def test_a_message_claimed_by_a_killed_consumer_goes_to_the_next_one(tmp_path):
    with connection(tmp_path) as conn:
        conn.SimpleQueue("work").put({"task": "revoke", "vendor": 7})
    hanging = start(tmp_path, "take-and-hang", stdout=subprocess.PIPE)
    try:
        assert json.loads(hanging.stdout.readline()) == {"task": "revoke", "vendor": 7}
    finally:
        os.killpg(hanging.pid, signal.SIGKILL)
        hanging.wait(timeout=10)

    with connection(tmp_path) as conn:
        message = conn.SimpleQueue("work").get(timeout=5)
        assert message.payload == {"task": "revoke", "vendor": 7}
        message.ack()
    assert list((tmp_path / "claimed").rglob("*.msg")) == []


def test_an_acked_message_is_gone_and_a_requeued_one_comes_back(tmp_path):
    with connection(tmp_path) as conn:
        queue = conn.SimpleQueue("work")
        queue.put({"n": 1})
        first = queue.get(timeout=2)
        first.requeue()
        again = queue.get(timeout=2)
        assert again.payload == {"n": 1}
        again.ack()
        with pytest.raises(queue.Empty):
            queue.get(timeout=0.3)
    assert list(tmp_path.rglob("*.msg")) == []


def test_a_file_that_is_not_a_message_is_set_aside_and_the_queue_goes_on(tmp_path):
    with connection(tmp_path) as conn:
        queue = conn.SimpleQueue("work")
        # What kombu's own transport left when a consumer listed the folder between create and write: nothing.
        (tmp_path / "queue" / "00000000000000000001_empty.work.msg").write_bytes(b"")
        (tmp_path / "queue" / "00000000000000000002_torn.work.msg").write_bytes(b'{"body": "abc')
        queue.put({"n": 2})
        message = queue.get(timeout=2)
        assert message.payload == {"n": 2}
        message.ack()
    assert sorted(p.name for p in (tmp_path / "rejected").iterdir()) == [
        "00000000000000000001_empty.work.msg",
        "00000000000000000002_torn.work.msg",
    ]


def test_publishers_and_consumers_side_by_side_deliver_every_message_once_and_whole(tmp_path):
    (tmp_path / "queue").mkdir()
    consumers = [start(tmp_path, "drain:120", stdout=subprocess.PIPE) for _ in range(2)]
    publishers = [start(tmp_path, f"publish:p{i}:1500", stderr=subprocess.PIPE) for i in range(2)]
    try:
        for publisher in publishers:
            assert publisher.wait(timeout=60) == 0, publisher.stderr.read()
        seen = []
        for consumer in consumers:
            out, _ = consumer.communicate(timeout=180)
            assert consumer.returncode == 0
            seen += json.loads(out)
    finally:
        for process in consumers + publishers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
    assert len(seen) == len(set(seen)) == 3000
    assert not (tmp_path / "rejected").exists() or list((tmp_path / "rejected").iterdir()) == []


def test_claims_of_a_live_process_are_left_alone(tmp_path):
    with connection(tmp_path) as conn:
        queue = conn.SimpleQueue("work")
        queue.put({"n": 3})
        held = queue.get(timeout=2)
        with connection(tmp_path) as other:
            channel = other.default_channel
            assert channel.restore_orphans() == 0
            with pytest.raises(queue.Empty):
                other.SimpleQueue("work").get(timeout=0.3)
        held.ack()
