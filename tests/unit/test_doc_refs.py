"""Design references stand alone: every "DESIGN ... §N" in the tree is written
"doc/DESIGN.md §N" (or §N-M) and names a section that doc/DESIGN.md has, and no
file points outside the repository for its design (a sibling checkout's folder
of shared notes, an absolute path on the developers' machines).
Usage: test_doc_refs.py SOURCE_ROOT. Exit 0 pass, 1 fail."""
import os
import re
import sys

SKIP_DIRS = {".git", "corpus", "out", "plots", "__pycache__"}
TEXT_EXT = {".c", ".h", ".py", ".md", ".scd", ".build", ".txt", ".sh", ".go", ".js", ""}
REF = re.compile(r"(\S*)DESIGN(?:\.md)?\s*§\s*(\d+)(?:\s*[-–]\s*(\d+))?")
# Spelled in parts so that this file does not itself match the pattern.
SHARED = "sha" + "red"
OUTSIDE = re.compile(r"\.\./" + SHARED + r"\b|/work/" + SHARED + r"\b")


def files(root):
    for d, dirs, names in os.walk(root):
        dirs[:] = [x for x in dirs if x not in SKIP_DIRS and not x.startswith("build")]
        for n in names:
            if os.path.splitext(n)[1] in TEXT_EXT:
                yield os.path.join(d, n)


def main(root):
    with open(os.path.join(root, "doc", "DESIGN.md"), encoding="utf-8") as f:
        sections = {int(m.group(1)) for m in re.finditer(r"^## (\d+)\. ", f.read(), re.M)}
    bad = []
    refs = 0
    for path in files(root):
        rel = os.path.relpath(path, root)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (UnicodeDecodeError, OSError):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line) and rel != os.path.join("tests", "unit", "test_doc_refs.py"):
                bad.append("%s:%d: points outside the repository: %s" % (rel, n, line.strip()))
            for m in REF.finditer(line):
                refs += 1
                prefix = m.group(1)
                if not (prefix.endswith("doc/") or rel == os.path.join("doc", "DESIGN.md")
                        or (rel.startswith("doc" + os.sep) and prefix == "")):
                    bad.append("%s:%d: write 'doc/DESIGN.md §%s': %s"
                               % (rel, n, m.group(2), line.strip()))
                lo = int(m.group(2))
                hi = int(m.group(3) or lo)
                missing = [s for s in range(lo, hi + 1) if s not in sections]
                if missing:
                    bad.append("%s:%d: doc/DESIGN.md has no section %s"
                               % (rel, n, ", ".join(map(str, missing))))
    for b in bad:
        print("FAIL: " + b)
    print("%d design reference(s) checked against sections %s" % (refs, sorted(sections)))
    return 1 if bad or not sections else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
