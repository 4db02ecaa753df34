"""
Tests for L{swooletw.http.forms}.
"""

from __future__ import annotations

import hashlib
import os
import random
import tracemalloc
from typing import Any, Iterator

from twisted.trial.unittest import SynchronousTestCase

from swooletw.http.forms import (
    FormError,
    MultipartParser,
    boundaryOf,
    parseContentType,
    parseCookies,
    parseQuery,
)

BOUNDARY = b"----swooletwBoundary7MA4YWxk"
#: Bytes that look like the start of a delimiter without being one.
TRICKY = b"\r\n--" + BOUNDARY[:-1] + b"\r\n-\r\n--\r\r\n\n" + BOUNDARY + b"\r"


def fieldPart(name: bytes, value: bytes) -> bytes:
    return b'Content-Disposition: form-data; name="%s"\r\n\r\n%s' % (name, value)


def filePart(name: bytes, filename: bytes, data: bytes, ctype: bytes = b"text/plain") -> bytes:
    return (
        b'Content-Disposition: form-data; name="%s"; filename="%s"\r\n'
        b"Content-Type: %s\r\n\r\n%s" % (name, filename, ctype, data)
    )


def body(*parts: bytes, boundary: bytes = BOUNDARY) -> bytes:
    """A multipart body of C{parts} (headers and content, without CRLF)."""
    out = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return out + b"--" + boundary + b"--\r\n"


def readFile(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class QueryTests(SynchronousTestCase):
    """
    L{parseQuery} follows PHP's C{parse_str}.
    """

    def test_plain(self) -> None:
        """
        Pairs become a dict of strings, URL-decoded, C{+} a space.
        """
        self.assertEqual(
            parseQuery(b"a=1&b=2&c=x+y%20z&d=%E4%BD%A0"),
            {"a": "1", "b": "2", "c": "x y z", "d": "\u4f60"},
        )

    def test_empty(self) -> None:
        """
        Empty input, empty pairs and empty names give nothing; a name
        without C{=} is C{""}.
        """
        self.assertEqual(parseQuery(b""), {})
        self.assertEqual(parseQuery(b"&&=1&[x]=2&a&b="), {"a": "", "b": ""})

    def test_lastWins(self) -> None:
        """
        A repeated plain name keeps its last value.
        """
        self.assertEqual(parseQuery(b"a=1&a=2&a=3"), {"a": "3"})

    def test_decoding(self) -> None:
        """
        Invalid UTF-8 becomes U+FFFD; a bad C{%} sequence is kept as is;
        names are decoded before brackets are read.
        """
        self.assertEqual(
            parseQuery(b"a=%FF%FE&b=%zz%4&c%5B%5D=1&d.e+f=2"),
            {"a": "\ufffd\ufffd", "b": "%zz%4", "c": ["1"], "d.e f": "2"},
        )

    def test_lists(self) -> None:
        """
        C{[]} appends to a list.
        """
        self.assertEqual(parseQuery(b"a[]=1&a[]=2&a[]=3"), {"a": ["1", "2", "3"]})

    def test_dicts(self) -> None:
        """
        Named keys make a dict; the last of repeated keys wins.
        """
        self.assertEqual(
            parseQuery(b"a[x]=1&a[y]=2&a[x]=3"), {"a": {"x": "3", "y": "2"}}
        )

    def test_nested(self) -> None:
        """
        Brackets nest.
        """
        self.assertEqual(
            parseQuery(b"a[x][]=1&a[x][]=2&a[y][z][w]=3"),
            {"a": {"x": ["1", "2"], "y": {"z": {"w": "3"}}}},
        )

    def test_indexedList(self) -> None:
        """
        C{0..n-1} in order stays a list (PHP's list); any other key turns
        it into a dict with string keys, and C{[]} then takes the next
        integer, as PHP does.
        """
        self.assertEqual(
            parseQuery(b"i[0][n]=a&i[1][n]=b&i[0][m]=c"),
            {"i": [{"n": "a", "m": "c"}, {"n": "b"}]},
        )
        self.assertEqual(parseQuery(b"a[]=1&a[x]=2&a[]=3"), {"a": {"0": "1", "x": "2", "1": "3"}})
        self.assertEqual(parseQuery(b"a[5]=1&a[]=2"), {"a": {"5": "1", "6": "2"}})
        self.assertEqual(parseQuery(b"a[]=1&a[2]=2"), {"a": {"0": "1", "2": "2"}})
        self.assertEqual(parseQuery(b"a[01]=1"), {"a": {"01": "1"}})

    def test_replace(self) -> None:
        """
        A scalar is replaced by an array and an array by a scalar.
        """
        self.assertEqual(parseQuery(b"a=1&a[]=2"), {"a": ["2"]})
        self.assertEqual(parseQuery(b"a[]=1&a=2"), {"a": "2"})
        self.assertEqual(parseQuery(b"a[x]=1&a[x][y]=2"), {"a": {"x": {"y": "2"}}})

    def test_oddBrackets(self) -> None:
        """
        An unterminated first bracket keeps the name as sent; text after a
        C{]} that is not a C{[} is ignored, as is a later unterminated
        bracket; leading spaces are dropped.
        """
        self.assertEqual(
            parseQuery(b"a[b=1&c[x]junk=2&d[x][y=3&+e=4"),
            {"a[b": "1", "c": {"x": "2"}, "d": {"x": "3"}, "e": "4"},
        )

    def test_maxFields(self) -> None:
        """
        More than C{maxFields} pairs raise, naming the limit.
        """
        self.assertEqual(len(parseQuery(b"&".join(b"a%d=1" % i for i in range(1000)))), 1000)
        error = self.assertRaises(
            FormError, parseQuery, b"&".join(b"a%d=1" % i for i in range(1001))
        )
        self.assertIn("maxFields", str(error))
        self.assertRaises(FormError, parseQuery, b"a=1&b=2&c=3", maxFields=2)

    def test_maxDepth(self) -> None:
        """
        More than C{maxDepth} nested brackets raise, naming the limit.
        """
        self.assertEqual(parseQuery(b"a" + b"[]" * 8 + b"=1")["a"], [[[[[[[["1"]]]]]]]])
        error = self.assertRaises(FormError, parseQuery, b"a" + b"[x]" * 9 + b"=1")
        self.assertIn("maxDepth", str(error))
        self.assertRaises(FormError, parseQuery, b"a[x][y]=1", maxDepth=1)

    def test_hugeIndex(self) -> None:
        """
        An index too long to be an integer is a string key, never an error.
        """
        key = "9" * 5000
        self.assertEqual(parseQuery(b"a[%s]=1&a[]=2" % key.encode()), {"a": {key: "1", "0": "2"}})


class CookieTests(SynchronousTestCase):
    """
    L{parseCookies} follows PHP's C{$_COOKIE}.
    """

    def test_pairs(self) -> None:
        """
        C{; }-separated pairs; values percent-decoded, C{+} kept; names as
        sent; no C{=} gives C{""}; empty names skipped.
        """
        self.assertEqual(
            parseCookies(b"a=1; b=x%20y+z;c;  d[x]=%E4%BD%A0; =skip; ;e=%FF"),
            {"a": "1", "b": "x y+z", "c": "", "d[x]": "\u4f60", "e": "\ufffd"},
        )
        self.assertEqual(parseCookies(b""), {})

    def test_firstWins(self) -> None:
        """
        The first of repeated names wins.
        """
        self.assertEqual(parseCookies(b"a=1; a=2; b=3; a=4"), {"a": "1", "b": "3"})

    def test_limit(self) -> None:
        """
        Cookies past C{maxCookies} are ignored.
        """
        header = b"; ".join(b"c%d=%d" % (i, i) for i in range(20))
        self.assertEqual(list(parseCookies(header, maxCookies=5)), ["c0", "c1", "c2", "c3", "c4"])


class ContentTypeTests(SynchronousTestCase):
    """
    L{parseContentType} and L{boundaryOf}.
    """

    def test_parse(self) -> None:
        """
        The media type is lower-cased; parameter names too; quoted values
        are unquoted and may hold C{;}; malformed parameters are skipped.
        """
        self.assertEqual(
            parseContentType(b'Text/HTML ; Charset=UTF-8; junk; name="a;b \\"c\\" C:\\d"; x = 1 '),
            ("text/html", {"charset": "UTF-8", "name": 'a;b "c" C:\\d', "x": "1"}),
        )
        self.assertEqual(parseContentType(b""), ("", {}))

    def test_boundary(self) -> None:
        """
        The boundary, quoted or not, if RFC 2046 allows it.
        """
        self.assertEqual(boundaryOf(b"multipart/form-data; boundary=abc"), b"abc")
        self.assertEqual(boundaryOf(b'multipart/form-data; BOUNDARY="a b:c?"'), b"a b:c?")
        self.assertEqual(boundaryOf(b"multipart/form-data; boundary=" + b"x" * 70), b"x" * 70)
        for bad in [b"multipart/form-data", b"multipart/form-data; boundary=",
                    b"multipart/form-data; boundary=" + b"x" * 71,
                    b'multipart/form-data; boundary="ab "', b"multipart/form-data; boundary=a\xffb",
                    b"multipart/form-data; boundary=a*b"]:
            self.assertIsNone(boundaryOf(bad), bad)


class MultipartTests(SynchronousTestCase):
    """
    L{MultipartParser} streams uploads to temporary files.
    """

    def setUp(self) -> None:
        self.tempDir = self.mktemp()
        os.makedirs(self.tempDir)

    def parser(self, **kwargs: Any) -> MultipartParser:
        kwargs.setdefault("tempDir", self.tempDir)
        parser = MultipartParser(BOUNDARY, **kwargs)
        self.addCleanup(parser.cleanup)
        return parser

    def leftovers(self) -> list[str]:
        return os.listdir(self.tempDir)

    def parse(self, data: bytes, cuts: list[int], **kwargs: Any) -> tuple[MultipartParser, dict, dict]:
        parser = self.parser(**kwargs)
        edges = [0, *cuts, len(data)]
        for start, end in zip(edges, edges[1:]):
            parser.feed(data[start:end])
        return (parser, *parser.close())

    def smallBody(self) -> bytes:
        return body(
            fieldPart(b"title", b"Hello, \xe4\xbd\xa0"),
            fieldPart(b"tags[]", b"a"),
            fieldPart(b"tags[]", b"b\r\nc"),
            filePart(b"upload", b"a.txt", TRICKY),
            fieldPart(b"empty", b""),
        )

    def checkSmall(self, fields: dict, files: dict) -> None:
        self.assertEqual(fields, {"title": "Hello, \u4f60", "tags": ["a", "b\r\nc"], "empty": ""})
        meta = files["upload"]
        self.assertEqual(readFile(meta.pop("tmp_name")), TRICKY)
        self.assertEqual(meta, {"name": "a.txt", "type": "text/plain", "error": 0, "size": len(TRICKY)})

    def test_everySplit(self) -> None:
        """
        Split at every offset, or fed byte by byte, the result is the same
        and the file holds exactly the bytes sent.
        """
        data = self.smallBody()
        for cut in range(len(data) + 1):
            parser, fields, files = self.parse(data, [cut])
            self.checkSmall(fields, files)
            parser.cleanup()
        parser, fields, files = self.parse(data, list(range(1, len(data))))
        self.checkSmall(fields, files)

    def test_cleanup(self) -> None:
        """
        Temporary files are named C{swooletw-upload-*} in C{tempDir} and
        L{MultipartParser.cleanup} removes them, also when already gone.
        """
        parser, fields, files = self.parse(
            body(filePart(b"a", b"a.bin", b"1"), filePart(b"b", b"b.bin", b"2")), []
        )
        names = sorted(self.leftovers())
        self.assertEqual(len(names), 2)
        self.assertTrue(all(n.startswith("swooletw-upload-") for n in names))
        os.unlink(files["a"]["tmp_name"])
        parser.cleanup()
        parser.cleanup()
        self.assertEqual(self.leftovers(), [])

    def test_preambleEpilogue(self) -> None:
        """
        Text before the first boundary (including the extra line ends some
        clients send) and after the last is ignored; so is padding after a
        boundary.
        """
        data = b"\r\n\r\npreamble\r\n" + body(fieldPart(b"a", b"1")).replace(
            BOUNDARY + b"\r\n", BOUNDARY + b" \t\r\n"
        ) + b"epilogue --" + BOUNDARY
        self.assertEqual(self.parse(data, [3, 20])[1], {"a": "1"})

    def test_fileArrays(self) -> None:
        """
        Bracketed file names are laid out as PHP's C{$_FILES}.
        """
        data = body(
            filePart(b"f[]", b"x.txt", b"X"),
            filePart(b"f[]", b"y.png", b"YY", b"image/png"),
            filePart(b"g[k]", b"z", b"Z"),
        )
        files = self.parse(data, [])[2]
        f = files["f"]
        self.assertEqual(f["name"], ["x.txt", "y.png"])
        self.assertEqual(f["type"], ["text/plain", "image/png"])
        self.assertEqual(f["size"], [1, 2])
        self.assertEqual(f["error"], [0, 0])
        self.assertEqual([readFile(p) for p in f["tmp_name"]], [b"X", b"YY"])
        self.assertEqual(files["g"]["name"], {"k": "z"})

    def test_noFile(self) -> None:
        """
        An empty filename is error 4 with no temporary file.
        """
        data = body(filePart(b"f", b"", b"", b"application/octet-stream"))
        files = self.parse(data, [])[2]
        self.assertEqual(files, {"f": {"name": "", "type": "", "tmp_name": "", "error": 4, "size": 0}})
        self.assertEqual(self.leftovers(), [])

    def test_nameless(self) -> None:
        """
        A part without a name is skipped, as PHP does.
        """
        data = body(b"Content-Disposition: form-data\r\n\r\nskipped", fieldPart(b"a", b"1"))
        self.assertEqual(self.parse(data, [])[1:], ({"a": "1"}, {}))

    def test_tooLarge(self) -> None:
        """
        A file over C{maxFileSize} is error 1, size 0, its file removed; the
        other parts are kept; exactly C{maxFileSize} is fine.
        """
        data = body(
            filePart(b"big", b"big.bin", b"x" * 101),
            filePart(b"ok", b"ok.bin", b"y" * 100),
            fieldPart(b"a", b"1"),
        )
        parser, fields, files = self.parse(data, [150, 151, 200], maxFileSize=100)
        self.assertEqual(
            files["big"], {"name": "big.bin", "type": "text/plain", "tmp_name": "", "error": 1, "size": 0}
        )
        self.assertEqual(readFile(files["ok"]["tmp_name"]), b"y" * 100)
        self.assertEqual(fields, {"a": "1"})
        self.assertEqual(self.leftovers(), [os.path.basename(files["ok"]["tmp_name"])])

    def assertFails(self, data: bytes, message: str, **kwargs: Any) -> None:
        """
        Parsing C{data} raises L{FormError} naming C{message}, leaves no
        file behind, and the parser refuses to go on.
        """
        parser = self.parser(**kwargs)
        error: Exception | None = None
        for start in range(0, len(data), 7):
            try:
                parser.feed(data[start : start + 7])
            except FormError as e:
                error = e
                break
        if error is None:
            error = self.assertRaises(FormError, parser.close)
        self.assertIn(message, str(error))
        self.assertEqual(self.leftovers(), [])
        self.assertRaises(FormError, parser.feed, b"x")
        self.assertRaises(FormError, parser.close)

    def test_malformed(self) -> None:
        """
        Malformed bodies raise and remove the files already written.
        """
        upload = filePart(b"f", b"f.txt", b"data" * 100)
        full = body(upload, fieldPart(b"a", b"1"))
        self.assertFails(full[: -len(BOUNDARY) - 6], "closing boundary")
        self.assertFails(full[:-4], "closing boundary")
        self.assertFails(b"no boundary at all", "closing boundary")
        self.assertFails(body(upload, b"Content-Type: text/plain\r\n\r\nx"), "Content-Disposition")
        self.assertFails(body(upload, b"\r\nx"), "Content-Disposition")
        self.assertFails(body(upload, b"no colon\r\n\r\nx"), "malformed part header")
        self.assertFails(body(upload).replace(b"--\r\n", b"xyz\r\n"), "line end")

    def test_limits(self) -> None:
        """
        Too many parts, headers too large, a field too large or nested too
        deep raise, naming the limit.
        """
        upload = filePart(b"f", b"f.txt", b"data")
        self.assertFails(body(upload, *[fieldPart(b"a", b"1")] * 3), "maxParts", maxParts=3)
        self.assertFails(
            body(upload, b"X-Pad: " + b"p" * 300 + b"\r\n" + fieldPart(b"a", b"1")),
            "maxHeaderSize", maxHeaderSize=256,
        )
        self.assertFails(body(upload, fieldPart(b"a", b"1" * 101)), "maxFieldSize", maxFieldSize=100)
        self.assertFails(body(upload, fieldPart(b"a[1][2][3]", b"1")), "maxDepth", maxDepth=2)
        self.assertEqual(self.parse(body(fieldPart(b"a", b"1" * 100)), [], maxFieldSize=100)[1], {"a": "1" * 100})

    def test_badBoundary(self) -> None:
        """
        A boundary outside 1 to 70 bytes is refused.
        """
        self.assertRaises(FormError, MultipartParser, b"")
        self.assertRaises(FormError, MultipartParser, b"x" * 71)


class BigUploadTests(SynchronousTestCase):
    """
    A 10 MiB upload streams to disk with bounded memory.
    """

    SIZE = 10 << 20

    def setUp(self) -> None:
        self.tempDir = self.mktemp()
        os.makedirs(self.tempDir)
        self.parser = MultipartParser(BOUNDARY, tempDir=self.tempDir)
        self.addCleanup(self.parser.cleanup)

    def content(self, rng: random.Random) -> Iterator[bytes]:
        """The uploaded file, in 64 KiB chunks of random and tricky bytes."""
        for _ in range(self.SIZE // 65536):
            yield rng.randbytes(65536 - len(TRICKY)) + TRICKY

    def stream(self, content: Iterator[bytes]) -> Iterator[bytes]:
        """The body around C{content}, chunk by chunk."""
        yield b"--" + BOUNDARY + b"\r\n" + filePart(b"f", b"big.bin", b"", b"application/octet-stream")
        yield from content
        yield b"\r\n--" + BOUNDARY + b"--\r\n"

    def checkFile(self, expected: str) -> None:
        _, files = self.parser.close()
        meta = files["f"]
        self.assertEqual(meta["size"], self.SIZE)
        with open(meta["tmp_name"], "rb") as f:
            self.assertEqual(hashlib.file_digest(f, "sha256").hexdigest(), expected)

    def test_boundedMemory(self) -> None:
        """
        Fed in 64 KiB chunks, the parser never holds more than a delimiter's
        length between calls, and its peak allocation stays far below the
        upload's size.
        """
        digest = hashlib.sha256()
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        def content() -> Iterator[bytes]:
            for chunk in self.content(random.Random(8)):
                digest.update(chunk)
                yield chunk

        for chunk in self.stream(content()):
            self.parser.feed(chunk)
            self.assertLessEqual(self.parser.buffered, len(BOUNDARY) + 4)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        self.assertLess(peak, 1 << 20)
        self.checkFile(digest.hexdigest())

    def test_randomSplits(self) -> None:
        """
        The same body split at random offsets gives a byte-exact file.
        """
        content = b"".join(self.content(random.Random(9)))
        data = b"".join(self.stream(iter([content])))
        expected = hashlib.sha256(content).hexdigest()
        rng = random.Random(10)
        offset = 0
        while offset < len(data):
            step = rng.choice([1, 2, len(BOUNDARY) + 3, rng.randrange(1, 300000)])
            self.parser.feed(data[offset : offset + step])
            offset += step
        self.checkFile(expected)
