"""The AMR-NB fixtures (issue 29), made from mono_8k.wav (the two-speaker clip on one channel):

    python tests/data/make_amr.py        # the project's virtualenv (PyAV) and sox with libsox-fmt-all

- ``amr_nb_8k_mono.amr``: the clip, 4 s of silence, the clip again (9.02 s), encoded by PyAV's
  opencore AMR-NB encoder at 12.2 kbit/s without DTX. FFmpeg "declares" a length estimated from the
  bitrate that differs from the 9.02 s that decode.
- ``amr_nb_dtx_8k_mono.amr``: the same audio written by sox (``-t amr-nb``), which sends silence
  descriptor frames (DTX) in the silence: FFmpeg's own AMR decoder stops at the first one.
"""

import shutil
import subprocess
import tempfile
from pathlib import Path

import av
import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> None:
    with av.open(str(HERE / "mono_8k.wav")) as container:
        clip = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    audio = np.concatenate([clip, np.zeros(4 * 8000, dtype=clip.dtype), clip])
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "joined.wav"
        with av.open(str(wav), "w") as out:
            stream = out.add_stream("pcm_s16le", rate=8000, layout="mono")
            frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1).astype(np.int16), format="s16", layout="mono")
            frame.sample_rate = 8000
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        with av.open(str(wav)) as source, av.open(str(HERE / "amr_nb_8k_mono.amr"), "w", format="amr") as out:
            stream = out.add_stream("libopencore_amrnb", rate=8000, layout="mono")
            stream.bit_rate = 12200
            for frame in source.decode(audio=0):
                frame.pts = None
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        subprocess.run([shutil.which("sox") or "sox", str(wav), "-t", "amr-nb", str(HERE / "amr_nb_dtx_8k_mono.amr")],
                       check=True)


if __name__ == "__main__":
    main()
