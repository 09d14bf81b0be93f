"""Write a weightless OneAlign folder of the real size, for ``--random-init`` benchmarks.

The released checkpoint is 16 GB and cannot be fetched on an offline machine, but speed and
memory only depend on the architecture: this writes the real configuration (8.2 B parameters,
448 px, 65 visual tokens), the CLIP preprocessing and the LLaMA tokenizer files of any OneAlign
folder (the test fixture's will do; the token ids of the prompts stay below the real vocabulary
size)::

    python bench/full_size_onealign.py tests/fixtures/onealign-tiny /tmp/one-align-size
    python bench/score_throughput.py --model /tmp/one-align-size --random-init --device cuda --dtype bfloat16
    python bench/train_throughput.py --onealign /tmp/one-align-size --device cuda --recipes onealign-lora
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")


def write_full_size_folder(tokenizer_from: Path, dest: Path) -> Path:
    from toolkit.models.onealign import MPLUGOwl2Config
    from toolkit.models.onealign.processing import CLIP_MEAN, CLIP_STD

    dest.mkdir(parents=True, exist_ok=True)
    MPLUGOwl2Config().save_pretrained(dest)  # the defaults are the released model's settings
    preprocessing = {
        "crop_size": 448,
        "size": 448,
        "do_center_crop": True,
        "do_normalize": True,
        "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor",
        "image_mean": list(CLIP_MEAN),
        "image_std": list(CLIP_STD),
        "resample": 3,
    }
    (dest / "preprocessor_config.json").write_text(json.dumps(preprocessing, indent=2))
    for name in TOKENIZER_FILES:
        if (tokenizer_from / name).is_file():
            shutil.copy(tokenizer_from / name, dest / name)
    if not (dest / "tokenizer.model").is_file():
        raise SystemExit(f"{tokenizer_from} has no tokenizer.model")
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tokenizer_from", type=Path, help="a OneAlign folder with tokenizer.model")
    ap.add_argument("dest", type=Path)
    args = ap.parse_args()
    print(write_full_size_folder(args.tokenizer_from, args.dest))


if __name__ == "__main__":
    main()
