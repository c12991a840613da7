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
"""
from __future__ import annotations

import os

import numpy as np

from .base import BenchmarkData, DatasetError, LongTailProtocol
from .features import benchmark_from_images
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
                "or corrupt. Delete it and download it again (or let --download fetch it)."
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


def cifar100_image_source(data_root: str | None = None, download: bool = True, image_size: int = 224):
    """(ImageSource of test then train images, number of test images, class names)."""
    root = prepare_cifar100_files(data_root, download)
    cls = _cifar100_class()
    try:
        test = cls(root, train=False, download=False)
        train = cls(root, train=True, download=False)
    except (RuntimeError, OSError, ValueError, KeyError) as error:
        raise DatasetError(f"cannot read CIFAR-100 under {root} ({error}); delete "
                           f"{os.path.join(root, cls.base_folder)} and download again.") from error
    images = np.concatenate([np.asarray(test.data, dtype=np.uint8), np.asarray(train.data, dtype=np.uint8)])
    labels = np.concatenate([np.asarray(test.targets), np.asarray(train.targets)]).astype(np.int64)
    source = ImageSource(images, labels, BackboneTransform(crop_size=image_size), name="cifar100")
    return source, len(test.data), tuple(train.classes)


def load_cifar100(
    data_root: str | None = None, download: bool = True, image_size: int = 224, **feature_options,
) -> BenchmarkData:
    """CIFAR-100 BenchmarkData (features from the ResNet34 cache; ``image_source`` set).

    ``feature_options``: cache_dir, weights ("IMAGENET1K_V1" or "random"), device, batch_size,
    num_workers, progress, random_seed; other options are ignored.
    """
    source, n_test, class_names = cifar100_image_source(data_root, download, image_size)
    n = len(source)
    return benchmark_from_images(
        "cifar100", source,
        query_index=np.arange(n_test), database_index=np.arange(n_test, n), class_names=class_names,
        card={"source": "CIFAR-100 (torchvision CIFAR100, python version, md5-checked)",
              "rows": f"test images 0..{n_test - 1} are queries, train images {n_test}..{n - 1} the database",
              "n_query": n_test, "n_database": n - n_test},
        long_tail_protocol=CIFAR100_PROTOCOL, **feature_options,
    )
