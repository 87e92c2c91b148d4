"""The clone cache on its own: one write per clone at a time across threads, clones reused
within their window and made again after it, the least recently used evicted past the bound,
and the commit built into a clone (the parent's tree with the files put in)."""

import threading
import time

from dulwich.objects import Blob, Commit, Tree

from integrations.providers.gitcache import CloneCache, commit_build, tree_blob
from integrations.providers.writes import blob_id


def test_two_threads_never_hold_the_same_clone_at_once(tmp_path):
    cache = CloneCache(root=str(tmp_path), max_age=300, max_bytes=10**9)
    inside, overlaps = [], []

    def write():
        with cache.checkout("https://dc.example/scm/a/b.git"):
            if inside:
                overlaps.append(True)
            inside.append(1)
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []
    assert (cache.stats.created, cache.stats.reused) == (1, 3)


def test_expired_clones_are_made_again_and_the_least_recently_used_evicted(tmp_path):
    cache = CloneCache(root=str(tmp_path), max_age=300, max_bytes=10**9)
    for url in ("https://dc.example/a.git", "https://dc.example/b.git"):
        with cache.checkout(url):
            pass
    assert len(cache.entries()) == 2
    cache.max_age = 0
    time.sleep(0.01)
    with cache.checkout("https://dc.example/a.git") as entry:
        assert entry.reused is False
    assert cache.stats.expired == 1
    sizes = {key: size for _used, key, size in cache.entries()}
    cache.max_bytes = sizes[CloneCache.key_for("https://dc.example/a.git")]
    cache.evict()  # b was used least recently
    assert [key for _u, key, _s in cache.entries()] == [
        CloneCache.key_for("https://dc.example/a.git")
    ]
    assert cache.stats.evicted == 1


def test_a_commit_puts_files_into_the_parents_tree(tmp_path):
    cache = CloneCache(root=str(tmp_path), max_age=300, max_bytes=10**9)
    with cache.checkout("https://dc.example/c.git") as entry:
        repo = entry.repo
        blob = Blob.from_string(b"keep\n")
        tree = Tree()
        tree.add(b"README.md", 0o100644, blob.id)
        repo.object_store.add_objects([(blob, None), (tree, None)])
        root = Commit()
        root.tree, root.author = tree.id, b"A <a@example.com>"
        root.committer, root.author_time, root.commit_time = root.author, 0, 0
        root.author_timezone = root.commit_timezone = 0
        root.message = b"root\n"
        repo.object_store.add_object(root)
        new = commit_build(
            repo,
            parent=root.id,
            files={"catalog-info.yaml": b"a\n", "svc/api/catalog-info.yaml": b"b\n"},
            message="Add catalog files",
            author="Lantern <lantern@localhost>",
        )
        commit = repo[new]
        assert commit.parents == [root.id]
        assert tree_blob(repo, commit.tree, "README.md") == blob.id
        assert tree_blob(repo, commit.tree, "catalog-info.yaml").decode() == blob_id(b"a\n")
        assert tree_blob(repo, commit.tree, "svc/api/catalog-info.yaml").decode() == blob_id(b"b\n")
        assert tree_blob(repo, commit.tree, "svc/api") is None
