"""The one-click sample photos in ``assets/samples/`` (from scikit-image's bundled data; see LICENSES.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "assets" / "samples"


@dataclass(frozen=True)
class Sample:
    """A sample photo: file, what it shows, where it comes from and under which licence."""

    file: str
    caption: str
    source: str
    licence: str
    skimage_file: str

    @property
    def path(self) -> Path:
        return SAMPLES_DIR / self.file

    @property
    def name(self) -> str:
        return Path(self.file).stem


SAMPLES: tuple[Sample, ...] = (
    Sample("cat.jpg", "Chelsea the cat (a tabby)", "scikit-image data.chelsea(), photo by Stefan van der Walt",
           "CC0", "chelsea.png"),
    Sample("coffee.jpg", "a cup of coffee", "scikit-image data.coffee(), photo by Rachel Michetti",
           "CC0", "coffee.png"),
    Sample("rocket.jpg", "Falcon 9 launching DSCOVR", "scikit-image data.rocket(), SpaceX Photos",
           "public domain", "rocket.jpg"),
    Sample("astronaut.jpg", "astronaut Eileen Collins", "scikit-image data.astronaut(), NASA",
           "public domain", "astronaut.png"),
)


def list_samples() -> list[Sample]:
    """The samples whose files are present, in display order."""
    return [s for s in SAMPLES if s.path.is_file()]


def sample_path(name: str) -> Path:
    """The path of a sample by name (``cat``) or file name (``cat.jpg``)."""
    for sample in list_samples():
        if name in (sample.name, sample.file):
            return sample.path
    from explorer.infer.images import ImageError

    raise ImageError(f"no sample named '{name}' (samples: {', '.join(s.name for s in list_samples())})")

