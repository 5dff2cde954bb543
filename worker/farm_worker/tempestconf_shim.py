"""python-tempestconf's `discover-tempest-config`, run by a job environment's Python.

This file is run by path (`<env>/bin/python tempestconf_shim.py ARGS`), in the job's
environment, where only Tempest and python-tempestconf are installed: it imports nothing of
farm_worker. It adds two things to the discovery, both in the worker's offline rule
(nothing is fetched from the internet):

- `--farm-no-image`: the image step (find or upload a cirros image) is turned off, for a
  worker with no local image to give; `[compute] image_ref` stays what the conf says.
- a download from the internet (python-tempestconf's default image URL) is refused with a
  line that says what to configure, instead of a long timeout on an offline host.

`--farm-self-check` imports the discovery and checks these hooks exist: a template's smoke
test runs it, so a python-tempestconf the shim no longer fits fails when the version is
prepared, not in a job.
"""

import sys
from typing import Any

NO_IMAGE = "--farm-no-image"
SELF_CHECK = "--farm-self-check"


def _refuse_download(self: Any, url: str, destination: str) -> None:
    raise RuntimeError(f"refusing to download {url}: this worker is offline; set "
                       "discovery_image in the worker's config (a local image file)")


def _no_image(self: Any, conf: Any, retry_alt: bool = False) -> None:
    print("farm: the image step is off: no image is looked up or uploaded",
          file=sys.stderr)


def main(argv: list[str]) -> int:
    from config_tempest import main as discover  # type: ignore[import-not-found]
    from config_tempest.services.image import ImageService  # type: ignore[import-not-found]

    for hook in ("create_tempest_images", "_download_file"):
        if not callable(getattr(ImageService, hook, None)):
            print(f"farm: python-tempestconf has no ImageService.{hook}", file=sys.stderr)
            return 3
    if SELF_CHECK in argv:
        return 0
    ImageService._download_file = _refuse_download
    if NO_IMAGE in argv:
        ImageService.create_tempest_images = _no_image
    sys.argv = ["discover-tempest-config", *(a for a in argv if a != NO_IMAGE)]
    discover.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
