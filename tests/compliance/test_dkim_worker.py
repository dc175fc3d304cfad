"""DKIM signing in a worker process (mta.compliance.dkim.worker): the same fields the in-process
signer makes, a fallback while the worker is away, and new keys after a reload."""

from __future__ import annotations

import asyncio
import os
import signal

from mta.compliance.dkim import DkimKeyConfig, DkimSigner, dns_record_value
from mta.compliance.dkim.worker import SigningWorker
from tests.compliance.messages import message
from tests.compliance.verifiers import dkimpy_results

NOW = 1_795_500_000.0


async def signed_by_worker(worker: SigningWorker, msg: bytes, domain: str, timeout: float = 30.0) -> bytes:
    """Signs until the worker (not the in-process fallback) did it: it starts in the background."""
    before = worker.offloaded
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        fields = await worker.sign(msg, domain)
        if worker.offloaded > before:
            return fields
        assert asyncio.get_running_loop().time() < deadline, "the worker never signed"
        await asyncio.sleep(0.05)


async def test_worker_signs_what_the_in_process_signer_signs(rsa_keys, ed25519_keys, key_file):
    configs = [DkimKeyConfig("example.com", "s1", key_file(rsa_keys[0], "rsa.key")),
               DkimKeyConfig("example.com", "e1", key_file(ed25519_keys[0], "ed.key"))]
    signer = DkimSigner(configs, clock=lambda: NOW)
    worker = SigningWorker(signer, clock=lambda: NOW)
    try:
        msg = message(20_000)
        fields = await signed_by_worker(worker, msg, "news.example.com")
        assert fields == signer.sign(msg, "news.example.com")      # byte for byte (both schemes are deterministic)
        records = {"s1._domainkey.example.com": dns_record_value(rsa_keys[0]),
                   "e1._domainkey.example.com": dns_record_value(ed25519_keys[0])}
        assert dkimpy_results(fields + msg, records) == [True, True]
        assert await worker.sign(msg, "other.example") == b""     # no key: nothing to sign, nothing sent
    finally:
        await worker.close()


async def test_a_dead_worker_is_replaced_and_nothing_goes_unsigned(rsa_keys, key_file):
    signer = DkimSigner([DkimKeyConfig("example.com", "s1", key_file(rsa_keys[0], "rsa.key"))], clock=lambda: NOW)
    worker = SigningWorker(signer, clock=lambda: NOW)
    try:
        msg = message(2_000)
        expected = signer.sign(msg, "example.com")
        assert await signed_by_worker(worker, msg, "example.com") == expected
        first = worker._process
        assert first is not None and first.pid is not None
        os.kill(first.pid, signal.SIGKILL)
        for _ in range(20):             # meanwhile every message is signed, in-process
            assert await worker.sign(msg, "example.com") == expected
            await asyncio.sleep(0.02)
        assert await signed_by_worker(worker, msg, "example.com") == expected
        assert worker._process is not None and worker._process.pid != first.pid
    finally:
        await worker.close()


async def test_reloaded_keys_reach_the_worker(rsa_keys, key_file):
    path = key_file(rsa_keys[0], "rsa.key")
    configs = [DkimKeyConfig("example.com", "s1", path)]
    signer = DkimSigner(configs, clock=lambda: NOW)
    worker = SigningWorker(signer, clock=lambda: NOW)
    try:
        msg = message(2_000)
        await signed_by_worker(worker, msg, "example.com")
        key_file(rsa_keys[1], "rsa.key")                    # the operator replaced the key file
        assert signer.reload(configs).ok
        fields = await signed_by_worker(worker, msg, "example.com")
        assert fields == signer.sign(msg, "example.com")
        assert dkimpy_results(fields + msg, {"s1._domainkey.example.com": dns_record_value(rsa_keys[1])}) == [True]
    finally:
        await worker.close()
