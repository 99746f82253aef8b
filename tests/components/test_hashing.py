import hashlib

from anomalyops.components.hashing import file_sha256, files_sha256


def test_file_sha256_matches_hashlib_across_blocks(tmp_path):
    path = tmp_path / "big.bin"
    data = bytes(range(256)) * 9000  # > one 1 MiB block
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_files_sha256_sees_names_and_bytes(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    base = files_sha256(tmp_path, [a, b])
    assert files_sha256(tmp_path, [b, a]) != base
    b.rename(tmp_path / "c.png")
    assert files_sha256(tmp_path, [a, tmp_path / "c.png"]) != base
