"""
Tests for L{swooletw.http.static}: which file answers a static request, and
how; hostile paths never reach a file outside the document root.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from swooletw.http.static import StaticFiles, StaticResult, httpDate, parseHttpDate

MTIME = 1_700_000_000.5  # Tue, 14 Nov 2023 22:13:20 GMT, with a fraction
BODY = b"0123456789" * 10  # a.txt: 100 bytes

FILES = {
    "a.txt": BODY,
    "index.html": b"<h1>hi</h1>",
    "style.css": b"body{}",
    "app.js": b"1;",
    "data.json": b"{}",
    "img.png": b"\x89PNG",
    "pic.svg": b"<svg/>",
    "blob.unknownext": b"?",
    "pack.tar.gz": b"\x1f\x8b",
    "empty.txt": b"",
    "sub/page.html": b"<p>sub</p>",
    "static/app.css": b"a{}",
}


def makeTree(testCase: SynchronousTestCase) -> tuple[str, str]:
    """
    A document root with FILES, symlinks in and out, a FIFO, and a sibling
    directory outside it holding secret.txt.  Returns (root, outside).
    """
    base = os.path.realpath(testCase.mktemp())
    root, outside = os.path.join(base, "root"), os.path.join(base, "outside")
    os.makedirs(outside)
    with open(os.path.join(outside, "secret.txt"), "wb") as f:
        f.write(b"SECRET")
    for name, content in FILES.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
        os.utime(path, (MTIME, MTIME))
    os.symlink(os.path.join(outside, "secret.txt"), os.path.join(root, "out.txt"))
    os.symlink(outside, os.path.join(root, "outdir"))
    os.symlink("../../outside/secret.txt", os.path.join(root, "sub", "rel.txt"))
    os.symlink(os.path.join(root, "a.txt"), os.path.join(root, "inlink.txt"))
    os.symlink("sub", os.path.join(root, "indir"))
    os.mkfifo(os.path.join(root, "pipe"))
    return root, outside


def header(result: StaticResult, name: str) -> str | None:
    """The value of header C{name} in C{result}, or None."""
    values = [value for key, value in result.headers if key.lower() == name.lower()]
    assert len(values) <= 1, values
    return values[0] if values else None


def sent(result: StaticResult) -> bytes:
    """The body the HTTP layer would send for C{result}."""
    assert result.path is not None
    with open(result.path, "rb") as f:
        f.seek(result.offset)
        return f.read(result.length)


class ConstructionTests(SynchronousTestCase):
    """The document root and the locations are checked up front."""

    def test_missingRoot(self) -> None:
        """A document root that does not exist is a ValueError naming it."""
        missing = os.path.join(self.mktemp(), "nope")
        error = self.assertRaises(ValueError, StaticFiles, missing)
        self.assertIn(missing, str(error))

    def test_fileRoot(self) -> None:
        """A document root that is a file is a ValueError naming it."""
        path = self.mktemp()
        with open(path, "wb"):
            pass
        error = self.assertRaises(ValueError, StaticFiles, path)
        self.assertIn(path, str(error))

    def test_symlinkedRoot(self) -> None:
        """A document root reached through a symlink serves its files."""
        root, _ = makeTree(self)
        link = os.path.join(os.path.dirname(root), "rootlink")
        os.symlink(root, link)
        result = StaticFiles(link).lookup(b"GET", b"/a.txt", {})
        self.assertEqual(result.status, 200)
        self.assertEqual(result.path, os.path.join(root, "a.txt"))

    def test_badLocation(self) -> None:
        """A location must start with '/'."""
        root, _ = makeTree(self)
        error = self.assertRaises(ValueError, StaticFiles, root, ["static"])
        self.assertIn("'static'", str(error))


class HostilePathTests(SynchronousTestCase):
    """Traversal attempts get 404 and no path, with or without locations."""

    HOSTILE = [
        b"/../etc/passwd",
        b"/%2e%2e/x",
        b"/%2E%2E/%2E%2E/etc/passwd",
        b"/a/%2e%2e/%2e%2e/x",
        b"/x%00.html",
        b"/a.txt%00",
        b"/a.txt\x00",
        b"/..%2fx",
        b"/%2fetc/passwd",
        b"/sub%2fpage.html",
        b"//etc/passwd",
        b"/sub//page.html",
        b"/sub\\..\\a.txt",
        b"/%5c..%5ca.txt",
        b"/sub/../a.txt",
        b"/./a.txt",
        b"/sub/.",
        b"/%c0%ae%c0%ae/etc/passwd",
        b"etc/passwd",
        b"",
        b"/out.txt",
        b"/outdir/secret.txt",
        b"/outdir/",
        b"/sub/rel.txt",
        b"/pipe",
    ]

    def setUp(self) -> None:
        self.root, self.outside = makeTree(self)

    def assertRefused(self, files: StaticFiles, path: bytes) -> None:
        for method in (b"GET", b"HEAD"):
            result = files.lookup(method, path, {})
            self.assertIsNotNone(result, path)
            self.assertEqual((result.status, result.path, result.length), (404, None, 0), path)
            self.assertEqual(result.headers, [("Content-Length", "0")])

    def test_everyPath(self) -> None:
        """Without locations, every hostile path is refused."""
        files = StaticFiles(self.root)
        for path in self.HOSTILE:
            self.assertRefused(files, path)

    def test_underLocation(self) -> None:
        """Under a location, hostile paths are refused as well."""
        files = StaticFiles(self.root, ["/static"])
        for path in [b"/static/../a.txt", b"/static/%2e%2e/a.txt", b"/static%2f..%2fa.txt",
                     b"/static/..%2f..%2foutside/secret.txt", b"/static/x%00"]:
            self.assertRefused(files, path)

    def test_doubleEncodingDecodedOnce(self) -> None:
        """%252e%252e is the literal name '%2e%2e': no such file."""
        files = StaticFiles(self.root)
        self.assertIsNone(files.lookup(b"GET", b"/%252e%252e/etc/passwd", {}))

    def test_neverOutside(self) -> None:
        """No lookup of any of these paths names a file outside the root."""
        files = StaticFiles(self.root)
        for path in self.HOSTILE + [b"/a.txt", b"/inlink.txt", b"/indir/page.html"]:
            result = files.lookup(b"GET", path, {})
            if result is not None and result.path is not None:
                self.assertEqual(os.path.commonpath([result.path, self.root]), self.root)

    def test_symlinkInside(self) -> None:
        """Symlinks resolving inside the root are served, by their real path."""
        files = StaticFiles(self.root)
        result = files.lookup(b"GET", b"/inlink.txt", {})
        self.assertEqual((result.status, result.path), (200, os.path.join(self.root, "a.txt")))
        result = files.lookup(b"GET", b"/indir/page.html", {})
        self.assertEqual(result.status, 200)
        self.assertEqual(result.path, os.path.join(self.root, "sub", "page.html"))
        self.assertEqual(sent(result), b"<p>sub</p>")


class SelectionTests(SynchronousTestCase):
    """What is static and what goes to the application."""

    def setUp(self) -> None:
        self.root, _ = makeTree(self)
        self.files = StaticFiles(self.root)

    def test_methods(self) -> None:
        """Only GET and HEAD are served; other methods go to the application."""
        for method in (b"POST", b"PUT", b"DELETE", b"OPTIONS", b"get"):
            self.assertIsNone(self.files.lookup(method, b"/a.txt", {}))

    def test_missing(self) -> None:
        """A missing file, or a file addressed as a directory, goes to the application."""
        for path in (b"/nope.txt", b"/sub/nope/x", b"/a.txt/", b"/a.txt/x"):
            self.assertIsNone(self.files.lookup(b"GET", path, {}), path)

    def test_directories(self) -> None:
        """Directories, index.html or not, go to the application."""
        for path in (b"/", b"/sub", b"/sub/", b"/indir"):
            self.assertIsNone(self.files.lookup(b"GET", path, {}), path)

    def test_queryAndFragment(self) -> None:
        """The query and fragment are not part of the file name."""
        for path in (b"/a.txt?v=1&x=/../../etc", b"/a.txt#top", b"/a%2Etxt?x"):
            result = self.files.lookup(b"GET", path, {})
            self.assertEqual(result.path, os.path.join(self.root, "a.txt"), path)

    def test_percentDecoded(self) -> None:
        """Encoded names are decoded once, UTF-8 included."""
        name = "caf\u00e9 x.txt"
        with open(os.path.join(self.root, name), "wb") as f:
            f.write(b"c")
        result = self.files.lookup(b"GET", b"/caf%C3%A9%20x.txt", {})
        self.assertEqual(result.path, os.path.join(self.root, name))

    def test_locations(self) -> None:
        """Locations select whole segments; a missing file under one is 404."""
        files = StaticFiles(self.root, ["/static", "/sub/"])
        self.assertIsNone(files.lookup(b"GET", b"/a.txt", {}))
        self.assertIsNone(files.lookup(b"GET", b"/staticky", {}))
        self.assertIsNone(files.lookup(b"GET", b"/STATIC/app.css", {}))
        self.assertEqual(files.lookup(b"GET", b"/static/app.css", {}).status, 200)
        self.assertEqual(files.lookup(b"GET", b"/%73tatic/app.css", {}).status, 200)
        self.assertEqual(files.lookup(b"GET", b"/sub/page.html", {}).status, 200)
        self.assertEqual(files.lookup(b"GET", b"/static/missing.css", {}).status, 404)
        self.assertIsNone(files.lookup(b"GET", b"/static", {}))
        self.assertIsNone(files.lookup(b"POST", b"/static/app.css", {}))


class ResponseTests(SynchronousTestCase):
    """Status, headers and byte spans of served files."""

    def setUp(self) -> None:
        self.root, _ = makeTree(self)
        self.files = StaticFiles(self.root)
        self.lastModified = "Tue, 14 Nov 2023 22:13:20 GMT"

    def get(self, path: bytes = b"/a.txt", method: bytes = b"GET", **headers: str) -> StaticResult:
        result = self.files.lookup(method, path, {k.replace("_", "-"): v for k, v in headers.items()})
        assert result is not None
        return result

    def test_whole(self) -> None:
        """A plain GET: 200, the whole file, every header."""
        result = self.get()
        self.assertEqual((result.status, result.offset, result.length, result.head), (200, 0, 100, False))
        self.assertEqual(header(result, "Content-Type"), "text/plain; charset=utf-8")
        self.assertEqual(header(result, "Content-Length"), "100")
        self.assertEqual(header(result, "Last-Modified"), self.lastModified)
        self.assertEqual(header(result, "Accept-Ranges"), "bytes")
        self.assertTrue(header(result, "ETag").startswith('"'))
        self.assertIsNone(header(result, "Content-Range"))
        self.assertEqual(sent(result), BODY)

    def test_mimeTypes(self) -> None:
        """Content-Type from the name, with charset=utf-8 for text/*."""
        expected = {
            b"/index.html": "text/html; charset=utf-8",
            b"/style.css": "text/css; charset=utf-8",
            b"/app.js": "text/javascript; charset=utf-8",
            b"/data.json": "application/json",
            b"/img.png": "image/png",
            b"/pic.svg": "image/svg+xml",
            b"/blob.unknownext": "application/octet-stream",
            b"/pack.tar.gz": "application/gzip",
            b"/inlink.txt": "text/plain; charset=utf-8",
        }
        for path, kind in expected.items():
            self.assertEqual(header(self.get(path), "Content-Type"), kind, path)

    def test_head(self) -> None:
        """HEAD: the GET headers, no body."""
        result = self.get(method=b"HEAD")
        self.assertEqual((result.status, result.length, result.head), (200, 0, True))
        self.assertEqual(header(result, "Content-Length"), "100")

    def test_emptyFile(self) -> None:
        """An empty file is 200 with no body, ranges or not."""
        for headers in ({}, {"range": "bytes=0-"}, {"range": "bytes=-5"}):
            result = self.files.lookup(b"GET", b"/empty.txt", headers)
            self.assertEqual((result.status, result.length), (200, 0))

    def test_notModified(self) -> None:
        """If-Modified-Since at or after the mtime (seconds): 304, no body."""
        for since in (self.lastModified, "Wed, 15 Nov 2023 00:00:00 GMT",
                      "Tuesday, 14-Nov-23 22:13:20 GMT", "Tue Nov 14 22:13:20 2023"):
            for method in (b"GET", b"HEAD"):
                result = self.get(method=method, if_modified_since=since)
                self.assertEqual((result.status, result.length), (304, 0), since)
                self.assertIsNone(header(result, "Content-Length"))
                self.assertEqual(header(result, "Last-Modified"), self.lastModified)

    def test_modified(self) -> None:
        """An older or invalid If-Modified-Since: 200."""
        for since in ("Tue, 14 Nov 2023 22:13:19 GMT", "yesterday", ""):
            self.assertEqual(self.get(if_modified_since=since).status, 200, since)

    def test_ifNoneMatch(self) -> None:
        """If-None-Match wins over If-Modified-Since."""
        etag = header(self.get(), "ETag")
        self.assertEqual(self.get(if_none_match=etag).status, 304)
        self.assertEqual(self.get(if_none_match=f'"x", W/{etag}').status, 304)
        self.assertEqual(self.get(if_none_match="*").status, 304)
        result = self.get(if_none_match='"other"', if_modified_since=self.lastModified)
        self.assertEqual(result.status, 200)

    def test_headerNamesAnyCase(self) -> None:
        """Request header names are matched whatever their case."""
        result = self.files.lookup(b"GET", b"/a.txt", {"If-Modified-Since": self.lastModified})
        self.assertEqual(result.status, 304)

    def assertPartial(self, spec: str, offset: int, length: int, method: bytes = b"GET") -> None:
        result = self.get(method=method, range=spec)
        self.assertEqual((result.status, result.offset), (206, offset), spec)
        self.assertEqual(result.length, 0 if method == b"HEAD" else length, spec)
        self.assertEqual(header(result, "Content-Length"), str(length), spec)
        self.assertEqual(header(result, "Content-Range"), f"bytes {offset}-{offset + length - 1}/100")
        if method == b"GET":
            self.assertEqual(sent(result), BODY[offset:offset + length])

    def test_ranges(self) -> None:
        """Single byte ranges: exact offset and length."""
        self.assertPartial("bytes=0-9", 0, 10)
        self.assertPartial("bytes=10-10", 10, 1)
        self.assertPartial("bytes=90-", 90, 10)
        self.assertPartial("bytes=-5", 95, 5)
        self.assertPartial("bytes=-500", 0, 100)
        self.assertPartial("bytes=95-200", 95, 5)
        self.assertPartial("Bytes = 3 - 4", 3, 2)
        self.assertPartial("bytes=0-99999999999999999999999", 0, 100)
        self.assertPartial("bytes=20-29", 20, 10, method=b"HEAD")

    def test_unsatisfiable(self) -> None:
        """A range past the end: 416 with Content-Range bytes */size."""
        for spec in ("bytes=100-", "bytes=100-200", "bytes=-0", "bytes=99999999999999999999999-"):
            result = self.get(range=spec)
            self.assertEqual((result.status, result.length), (416, 0), spec)
            self.assertEqual(header(result, "Content-Range"), "bytes */100")
            self.assertEqual(header(result, "Content-Length"), "0")

    def test_ignoredRanges(self) -> None:
        """Several, invalid or non-byte ranges: 200 and the whole file."""
        for spec in ("bytes=0-1,5-6", "bytes=5-2", "bytes=abc", "bytes=-", "bytes=",
                     "items=0-1", "0-1", "bytes=1-2-3", "bytes=--1", "bytes=\u0661-\u0662"):
            result = self.get(range=spec)
            self.assertEqual((result.status, result.offset, result.length), (200, 0, 100), spec)

    def test_ifRange(self) -> None:
        """If-Range: the range when the validator matches, else the whole file."""
        etag = header(self.get(), "ETag")
        self.assertEqual(self.get(range="bytes=0-1", if_range=etag).status, 206)
        self.assertEqual(self.get(range="bytes=0-1", if_range=self.lastModified).status, 206)
        for other in ('"other"', f"W/{etag}", "Wed, 15 Nov 2023 00:00:00 GMT", "junk"):
            self.assertEqual(self.get(range="bytes=0-1", if_range=other).status, 200, other)

    def test_notModifiedBeatsRange(self) -> None:
        """A conditional 304 is answered before any range."""
        self.assertEqual(self.get(range="bytes=0-1", if_modified_since=self.lastModified).status, 304)


class HttpDateTests(SynchronousTestCase):
    """httpDate and parseHttpDate."""

    def test_format(self) -> None:
        """IMF-fixdate, in GMT, whatever the locale."""
        self.assertEqual(httpDate(784111777), "Sun, 06 Nov 1994 08:49:37 GMT")
        self.assertEqual(httpDate(784111777.9), "Sun, 06 Nov 1994 08:49:37 GMT")

    def test_parseForms(self) -> None:
        """The three forms RFC 9110 makes recipients accept."""
        for text in ("Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
                     "Sun Nov  6 08:49:37 1994", " Sun, 06 Nov 1994 08:49:37 GMT "):
            self.assertEqual(parseHttpDate(text), 784111777.0, text)

    def test_roundTrip(self) -> None:
        """parseHttpDate(httpDate(t)) is t to the second."""
        for stamp in (0, 1_700_000_000, 4_102_444_800):
            self.assertEqual(parseHttpDate(httpDate(stamp)), float(stamp))

    def test_invalid(self) -> None:
        """Anything else is None."""
        for text in ("", "yesterday", "Sun, 31 Feb 1994 08:49:37 GMT",
                     "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 1994 25:49:37 GMT",
                     "Sun, 06 Nov 1994 08:49:37 PST", "1994-11-06T08:49:37Z",
                     "Sun, \u0660\u0666 Nov 1994 08:49:37 GMT"):
            self.assertIsNone(parseHttpDate(text), text)
