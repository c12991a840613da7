"""CIFAR-100 as the LTHNet paper uses it: the 10,000 test images are the queries, the 50,000
training images the database from which long-tail training sets are drawn (Table 2).

Conventions:
- Rows: the 10,000 test images first (``query_index`` = 0..9,999), then the 50,000 training images
  (``database_index`` = 10,000..59,999), each in torchvision's file order. Labels are the fine
  labels; class names come from the ``meta`` pickle (``fine_label_names``).
- Files: torchvision's ``CIFAR100`` (python pickle version). ``data_root`` (default ``./data``)
  holds ``cifar-100-python/`` or the archive ``cifar-100-python.tar.gz``; the archive and the
  extracted files are md5-checked against torchvision's published checksums. ``download=True``
  (default) fetches the archive with torchvision's downloader when neither is present.
- Features: cached ResNet34 rows of ``BackboneTransform(image_size)``: the 32x32 images are
  resized (bilinear) to 256 and centre-cropped to 224, then ImageNet mean/std normalised (the LTHNet
  reference code's evaluation transform); ``image_size`` changes the crop (resize = crop * 256/224).
- Long-tail protocol (paper §6.1, Table 2): s_1 = 500, mu = 0, 0.83, 0.99 for IF = 1, 50, 100.
- Row paths (exported split lists, datasets/lists.py): the LTHNet folder layout relative to its
  ``images`` folder, ``query/<fine class>/<file name>`` for test images and
  ``database/<fine class>/<file name>`` for training images, with the archive's own file names
  (``filenames`` in the pickles, e.g. ``apple_s_000027.png``, as in the LTHNet authors' release).
  ``extract_cifar100_images`` writes the PNGs at those paths, so the lists name real files and
  the folder, given a ``train/`` split, is an ``lthnet-folder`` dataset.
"""
from __future__ import annotations

import os
import pickle

import numpy as np

from .base import BenchmarkData, DatasetError, LongTailProtocol
from .features import benchmark_from_images, takes_feature_options
from .images import BackboneTransform, ImageSource

CIFAR100_PROTOCOL = LongTailProtocol(max_class_size=500, mu_by_imbalance_factor={1.0: 0.0, 50.0: 0.83, 100.0: 0.99})
DEFAULT_DATA_ROOT = "data"
OFFLINE_HINT = ("pass --data-root DIR containing cifar-100-python (or the archive), "
                "or run --dataset digits offline")


def _cifar100_class():
    from ._torchvision import import_torchvision

    return import_torchvision().datasets.CIFAR100


def _folder_problems(root: str) -> list[str]:
    """Files of the extracted folder that are missing or fail their md5 (empty: all good)."""
    from ._torchvision import import_torchvision

    check_integrity = import_torchvision().datasets.utils.check_integrity
    cls = _cifar100_class()
    expected = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
    problems = []
    for filename, md5 in expected:
        path = os.path.join(root, cls.base_folder, filename)
        if not os.path.isfile(path):
            problems.append(f"{path} is missing")
        elif not check_integrity(path, md5):
            problems.append(f"{path} fails its md5 checksum (expected {md5})")
    return problems


def prepare_cifar100_files(data_root: str | None = None, download: bool = True) -> str:
    """The root under which ``cifar-100-python/`` is complete and checksum-verified.

    Uses, in order: the extracted folder, a local archive (md5-checked, then extracted), the
    torchvision download (if ``download``). Raises DatasetError saying what to do otherwise.
    """
    from ._torchvision import import_torchvision

    utils = import_torchvision().datasets.utils
    cls = _cifar100_class()
    root = os.path.expanduser(data_root or DEFAULT_DATA_ROOT)
    if os.path.basename(os.path.normpath(root)) == cls.base_folder:  # the user named the folder itself
        root = os.path.dirname(os.path.normpath(root))
    folder = os.path.join(root, cls.base_folder)
    archive = os.path.join(root, cls.filename)

    folder_problems = _folder_problems(root) if os.path.isdir(folder) else ["absent"]
    if not folder_problems:
        return root
    if os.path.isfile(archive):
        if not utils.check_integrity(archive, cls.tgz_md5):
            raise DatasetError(
                f"CIFAR-100 archive {archive} fails its md5 checksum (expected {cls.tgz_md5}): it is truncated "
                "or corrupt. Delete it and download it again (the loader downloads it when download=True, the default)."
            )
        try:
            utils.extract_archive(archive, root)
        except Exception as error:  # tarfile.ReadError, EOFError, OSError
            raise DatasetError(f"cannot extract {archive} ({error}); delete it and download it again.") from error
    elif os.path.isdir(folder) and folder_problems != ["absent"]:
        raise DatasetError(
            f"CIFAR-100 files are corrupt: {'; '.join(folder_problems)} (checksum failure). Delete {folder} "
            "and download the archive again."
        )
    elif download:
        try:
            os.makedirs(root, exist_ok=True)
            utils.download_and_extract_archive(cls.url, root, filename=cls.filename, md5=cls.tgz_md5)
        except RuntimeError as error:  # torchvision: "File not found or corrupted." after download
            raise DatasetError(f"the downloaded CIFAR-100 archive fails its md5 checksum ({error}); delete "
                               f"{archive} and try again, or {OFFLINE_HINT}.") from error
        except Exception as error:  # URLError / OSError: no network
            raise DatasetError(f"cannot download CIFAR-100 into {root} ({type(error).__name__}: {error}); "
                               f"{OFFLINE_HINT}.") from error
    else:
        raise DatasetError(f"CIFAR-100 not found under {root} and download is off; {OFFLINE_HINT}.")
    folder_problems = _folder_problems(root)
    if folder_problems:
        raise DatasetError(f"CIFAR-100 files are corrupt after extraction: {'; '.join(folder_problems)} "
                           f"(checksum failure). Delete {folder} and {archive} and download again.")
    return root


def _read_pickle(path: str) -> dict:
    with open(path, "rb") as handle:
        return pickle.load(handle, encoding="latin1")  # md5-verified above; torchvision reads it the same way


def read_cifar100(data_root: str | None = None, download: bool = True) -> dict:
    """The verified archive's contents, test part first: ``images`` uint8 (n, 32, 32, 3), ``labels``,
    ``n_test``, ``class_names`` (fine labels) and ``row_paths`` (see the module docstring)."""
    root = prepare_cifar100_files(data_root, download)
    cls = _cifar100_class()
    folder = os.path.join(root, cls.base_folder)
    try:
        class_names = tuple(_read_pickle(os.path.join(folder, cls.meta["filename"]))[cls.meta["key"]])
        parts = []
        for role, files in (("query", cls.test_list), ("database", cls.train_list)):
            for filename, _md5 in files:
                entry = _read_pickle(os.path.join(folder, filename))
                images = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                labels = np.asarray(entry["fine_labels"] if "fine_labels" in entry else entry["labels"], dtype=np.int64)
                names = entry.get("filenames") or [f"{filename}_{i:05d}.png" for i in range(len(labels))]
                paths = [f"{role}/{class_names[label]}/{name}" for label, name in zip(labels, names)]
                parts.append((images, labels, paths))
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, KeyError, IndexError) as error:
        raise DatasetError(f"cannot read CIFAR-100 under {root} ({type(error).__name__}: {error}); delete "
                           f"{folder} and download again.") from error
    n_test = sum(len(labels) for images, labels, paths in parts[:len(cls.test_list)])
    return {"images": np.concatenate([p[0] for p in parts]), "labels": np.concatenate([p[1] for p in parts]),
            "n_test": n_test, "class_names": class_names,
            "row_paths": tuple(path for part in parts for path in part[2])}


def extract_cifar100_images(out_dir: str, data_root: str | None = None, download: bool = True) -> int:
    """Write every CIFAR-100 image as a PNG at ``<out_dir>/images/<row path>`` (the LTHNet layout of
    the module docstring); returns the number written. Existing files are overwritten."""
    from PIL import Image

    read = read_cifar100(data_root, download)
    paths = read["row_paths"]
    if len(set(paths)) != len(paths):
        raise DatasetError("CIFAR-100 file names repeat within a class folder; the archive is not the standard one.")
    images_dir = os.path.join(out_dir, "images")
    for image, path in zip(read["images"], paths):
        target = os.path.join(images_dir, *path.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        Image.fromarray(image).save(target, format="PNG")
    return len(paths)


@takes_feature_options
def load_cifar100(
    data_root: str | None = None, download: bool = True, image_size: int = 224, feature_options: dict | None = None,
) -> BenchmarkData:
    """CIFAR-100 BenchmarkData (features from the ResNet34 cache; ``image_source`` and ``row_paths`` set).

    Feature-cache options (keyword-only): cache_dir, weights ("IMAGENET1K_V1" or "random"), device,
    batch_size, num_workers, progress, random_seed, verify.
    """
    read = read_cifar100(data_root, download)
    source = ImageSource(read["images"], read["labels"], BackboneTransform(crop_size=image_size), name="cifar100")
    n_test, n = read["n_test"], len(source)
    return benchmark_from_images(
        "cifar100", source,
        query_index=np.arange(n_test), database_index=np.arange(n_test, n), class_names=read["class_names"],
        card={"source": "CIFAR-100 (torchvision CIFAR100, python version, md5-checked)",
              "rows": f"test images 0..{n_test - 1} are queries, train images {n_test}..{n - 1} the database",
              "n_query": n_test, "n_database": n - n_test},
        long_tail_protocol=CIFAR100_PROTOCOL, feature_options=feature_options, row_paths=read["row_paths"],
    )
