"""A pocketsphinx decoder in a child process, so that a decode can be stopped at a time bound.

pocketsphinx decodes an utterance in one C call that holds the GIL and cannot be interrupted.
On real speech that call is quick (≈ 0.1 × real time here), but on the garbage a barely
trained model speaks the grammar search stays wide and it took up to 2 × real time — 7 s for
one sentence, most of a minute for a checkpoint (measured on the default sweep's s-u64 and
baseline-u64). Feeding the audio in pieces would allow a check between them, but changes the
transcripts (live instead of whole-utterance cepstral mean normalisation: 26 of 40 equal).
So the whole-utterance call runs in a child process; when it outlasts its bound the child is
killed, a fresh one started, and the caller gets `TimeoutError`.

The child runs this file as a script (`python decoder_process.py OPTIONS_JSON`): it imports
only pocketsphinx, and nothing of the parent's `__main__` is re-run (as multiprocessing's
"spawn" would). Protocol on its stdin/stdout: a 4-byte length and 16 kHz int16 PCM in, one
JSON line out ({"hyp": text or null} or {"error": message})."""

from __future__ import annotations

import contextlib
import json
import select
import struct
import subprocess
import sys

__all__ = ["DecoderProcess"]


class DecoderProcess:
    """`decode(pcm, limit_s)` → the hypothesis (None: nothing recognised), or `TimeoutError`
    after `limit_s` seconds, with the child replaced by a fresh one."""

    def __init__(self, **decoder_options: str | bool) -> None:
        self._options = json.dumps(decoder_options)
        self._start()

    def _start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, __file__, self._options],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._reply(timeout=None)  # the decoder loaded, or why not

    def decode(self, pcm: bytes, limit_s: float) -> str | None:
        assert self._process.stdin is not None
        self._process.stdin.write(struct.pack("<I", len(pcm)) + pcm)
        self._process.stdin.flush()
        return self._reply(timeout=limit_s)

    def _reply(self, timeout: float | None) -> str | None:
        out = self._process.stdout
        assert out is not None
        ready, _, _ = select.select([out], [], [], timeout)
        if not ready:
            self.close()
            self._start()
            raise TimeoutError(f"decoding took over {timeout:.1f} s")
        line = out.readline()
        if not line:
            raise RuntimeError(f"pocketsphinx: the decoder process exited ({self._process.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"pocketsphinx: {reply['error']}")
        return reply.get("hyp")

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()

    def __del__(self) -> None:
        # At interpreter shutdown this may fail; the child then sees its stdin close and exits.
        with contextlib.suppress(Exception):
            self.close()


def _serve(options: dict[str, str]) -> None:
    import pocketsphinx

    def send(reply: dict) -> None:
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()

    try:
        decoder = pocketsphinx.Decoder(loglevel="FATAL", **options)
    except Exception as err:
        send({"error": f"{type(err).__name__}: {err}"})
        return
    send({"ready": True})
    stdin = sys.stdin.buffer
    while True:
        header = stdin.read(4)
        if len(header) < 4:  # the parent closed the pipe or exited
            return
        pcm = stdin.read(struct.unpack("<I", header)[0])
        try:
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            hypothesis = decoder.hyp()
            send({"hyp": None if hypothesis is None else hypothesis.hypstr})
        except Exception as err:
            send({"error": f"{type(err).__name__}: {err}"})


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
