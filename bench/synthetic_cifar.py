"""A synthetic CIFAR-10 in the official format, for measuring the CIFAR path where the real set is absent.

    python bench/synthetic_cifar.py /tmp/data     # writes /tmp/data/cifar-10-batches-py (random pixels)

The official `cifar-10-batches-py` files are Python 2 pickles (protocol 2): dicts with str keys
`batch_label`, `labels` (a list of ints), `data` (a numpy uint8 array of shape (10000, 3072), its bytes
in one Python 2 str) and `filenames`, and `batches.meta`. Python 3's pickle cannot write Python 2 strs,
so this module writes those opcodes itself; the files load exactly like the downloaded ones
(`pickle.load(f, encoding="latin1")` under Python 3). Only the pixels and labels are random.
"""

import argparse
import os
import pickle
import struct

import numpy as np

FOLDER = "cifar-10-batches-py"
PER_BATCH = 10_000  # images per batch file in the official set
LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def py2_pickle(obj, out):
    """Write `obj` (dict, list, tuple, int, bool, None, Python 2 str given as bytes, uint8 ndarray) as
    a Python 2 protocol 2 pickle, the opcodes cPickle wrote for the official CIFAR-10 batches."""
    out.write(pickle.PROTO + b"\x02")
    write_value(obj, out)
    out.write(pickle.STOP)


def write_value(obj, out):
    if obj is None:
        out.write(pickle.NONE)
    elif isinstance(obj, bool):
        out.write(pickle.NEWTRUE if obj else pickle.NEWFALSE)
    elif isinstance(obj, int):
        write_int(obj, out)
    elif isinstance(obj, bytes):  # a Python 2 str
        if len(obj) < 256:
            out.write(pickle.SHORT_BINSTRING + bytes((len(obj),)) + obj)
        else:
            out.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
    elif isinstance(obj, tuple):
        write_tuple(obj, out)
    elif isinstance(obj, list):
        out.write(pickle.EMPTY_LIST + pickle.MARK)
        for item in obj:
            write_value(item, out)
        out.write(pickle.APPENDS)
    elif isinstance(obj, dict):
        out.write(pickle.EMPTY_DICT + pickle.MARK)
        for key, value in obj.items():
            write_value(key, out)
            write_value(value, out)
        out.write(pickle.SETITEMS)
    elif isinstance(obj, np.ndarray) and obj.dtype == np.uint8:
        write_uint8_array(obj, out)
    else:
        raise TypeError(f"py2_pickle cannot write {type(obj).__name__}")


def write_int(value, out):
    if 0 <= value < 256:
        out.write(pickle.BININT1 + bytes((value,)))
    elif 0 <= value < 65536:
        out.write(pickle.BININT2 + struct.pack("<H", value))
    else:
        out.write(pickle.BININT + struct.pack("<i", value))


def write_tuple(items, out):
    short = {0: pickle.EMPTY_TUPLE, 1: pickle.TUPLE1, 2: pickle.TUPLE2, 3: pickle.TUPLE3}
    if len(items) not in short:
        out.write(pickle.MARK)
    for item in items:
        write_value(item, out)
    out.write(short.get(len(items), pickle.TUPLE))


def write_uint8_array(array, out):
    """numpy 1.x under Python 2: _reconstruct(ndarray, (0,), 'b'), then __setstate__ with the dtype
    u1 (its own version-3 state) and the C-order bytes as one str."""
    out.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
    out.write(pickle.GLOBAL + b"numpy\nndarray\n")
    write_tuple((0,), out)
    write_value(b"b", out)
    out.write(pickle.TUPLE3 + pickle.REDUCE)
    out.write(pickle.MARK)
    write_int(1, out)
    write_tuple(array.shape, out)
    out.write(pickle.GLOBAL + b"numpy\ndtype\n")
    write_tuple((b"u1", 0, 1), out)
    out.write(pickle.REDUCE)
    write_tuple((3, b"|", None, None, None, -1, -1, 0), out)
    out.write(pickle.BUILD)
    write_value(False, out)
    write_value(np.ascontiguousarray(array).tobytes(), out)
    out.write(pickle.TUPLE + pickle.BUILD)


def write_cifar(root, per_batch=PER_BATCH, seed=0):
    """root/cifar-10-batches-py with data_batch_1..5, test_batch (`per_batch` random images each) and
    batches.meta; returns the folder. One batch is in memory at a time."""
    folder = os.path.join(root, FOLDER)
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [(f"data_batch_{i}", f"training batch {i} of 5") for i in range(1, 6)] + [
        ("test_batch", "testing batch 1 of 1")
    ]
    for name, batch_label in names:
        labels = rng.integers(0, 10, per_batch)
        batch = {
            b"batch_label": batch_label.encode(),
            b"labels": [int(label) for label in labels],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"{LABEL_NAMES[label]}_s_{i:06d}.png".encode() for i, label in enumerate(labels)],
        }
        with open(os.path.join(folder, name), "wb") as f:
            py2_pickle(batch, f)
    meta = {b"num_cases_per_batch": per_batch, b"label_names": [n.encode() for n in LABEL_NAMES], b"num_vis": 3072}
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        py2_pickle(meta, f)
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder to write cifar-10-batches-py into")
    parser.add_argument("--per_batch", type=int, default=PER_BATCH, help="images in each of the six batch files")
    args = parser.parse_args()
    print(write_cifar(args.root, args.per_batch))


if __name__ == "__main__":
    main()
