"""
Tests for L{swooletw.http.compress}: Accept-Encoding negotiation and the
gzip/deflate compressors.
"""

from __future__ import annotations

import gzip
import zlib

from twisted.trial.unittest import SynchronousTestCase

from swooletw.http import compress
from swooletw.http.compress import (
    DEFAULT_COMPRESSION_LEVEL,
    DEFAULT_COMPRESSION_MIN_LENGTH,
    Compressor,
    chooseEncoding,
    clampLevel,
    compressBody,
    compressible,
    shouldCompress,
)

DATA = b"".join(b"line %d of a compressible body\n" % i for i in range(5000))


def decode(encoding: str, data: bytes) -> bytes:
    """The stdlib's reading of C{data} in C{encoding}."""
    return gzip.decompress(data) if encoding == "gzip" else zlib.decompress(data)


class ChooseEncodingTests(SynchronousTestCase):
    """chooseEncoding honours q-values, '*' and identity."""

    CASES = [
        (None, None),
        ("", None),
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("gzip, deflate", "gzip"),
        ("deflate, gzip", "gzip"),
        ("gzip, deflate, br", "gzip"),
        ("br", None),
        ("identity", None),
        ("GZIP", "gzip"),
        ("x-gzip", "gzip"),
        ("deflate;q=1, gzip;q=0.5", "deflate"),
        ("gzip ; q=0.8 , deflate;Q=0.9", "deflate"),
        ("gzip;q=0", None),
        ("gzip;q=0.000", None),
        ("gzip;q=0, deflate", "deflate"),
        ("gzip;q=1.0", "gzip"),
        ("gzip;q=0.001", "gzip"),
        ("*", "gzip"),
        ("*;q=0", None),
        ("*, gzip;q=0", "deflate"),
        ("*;q=0.5, deflate", "deflate"),
        ("gzip;q=0.5, identity", None),
        ("gzip;q=0.5, identity;q=0.1", "gzip"),
        ("gzip, identity", "gzip"),
        ("identity;q=0, *;q=0", None),
        ("*;q=0.2", "gzip"),
        ("gzip;q=0.5, *", "deflate"),
        ("gzip;q=0.5, *;q=0.4", "gzip"),
        ("gzip;q=2", None),
        ("gzip;q=0.5000", None),
        ("gzip;q=abc, deflate;q=0.1", "deflate"),
        (" , ,gzip", "gzip"),
        ("gzip;level=1", "gzip"),
        ("gzip;q=0.\u0665", None),
    ]

    def test_cases(self) -> None:
        """Each Accept-Encoding gets the expected coding."""
        for header, expected in self.CASES:
            self.assertEqual(chooseEncoding(header), expected, header)

    def test_offered(self) -> None:
        """Only offered codings are chosen, preferred in the offered order."""
        self.assertEqual(chooseEncoding("gzip, deflate", offered=("deflate",)), "deflate")
        self.assertEqual(chooseEncoding("gzip", offered=("deflate",)), None)
        self.assertEqual(chooseEncoding("gzip, deflate", offered=("deflate", "gzip")), "deflate")
        self.assertEqual(chooseEncoding("gzip", offered=()), None)
        self.assertEqual(chooseEncoding("gzip;q=0.5, *", offered=("gzip",)), None)


class CompressorTests(SynchronousTestCase):
    """Compressor output is what gzip and zlib read back."""

    def test_roundTrip(self) -> None:
        """One-shot gzip and deflate (zlib-wrapped) round-trip."""
        for encoding, magic in (("gzip", b"\x1f\x8b"), ("deflate", b"\x78")):
            for level in (1, 6, 9):
                data = compressBody(DATA, encoding, level)
                self.assertTrue(data.startswith(magic), encoding)
                self.assertLess(len(data), len(DATA) // 5)
                self.assertEqual(decode(encoding, data), DATA)

    def test_streamingEqualsOneShot(self) -> None:
        """Chunk by chunk gives the same bytes as all at once."""
        for encoding in compress.ENCODINGS:
            compressor = Compressor(encoding, 6)
            parts = [compressor.compress(DATA[i:i + 777]) for i in range(0, len(DATA), 777)]
            streamed = b"".join(parts) + compressor.flush()
            self.assertEqual(decode(encoding, streamed), DATA)
            self.assertEqual(streamed, compressBody(DATA, encoding, 6))

    def test_syncFlush(self) -> None:
        """After syncFlush, everything so far is decodable."""
        for encoding in compress.ENCODINGS:
            compressor = Compressor(encoding)
            reader = zlib.decompressobj(zlib.MAX_WBITS | 32)
            first = compressor.compress(b"hello ") + compressor.syncFlush()
            self.assertEqual(reader.decompress(first), b"hello ")
            rest = compressor.compress(b"world") + compressor.flush()
            self.assertEqual(reader.decompress(rest), b"world")
            self.assertTrue(reader.eof)

    def test_empty(self) -> None:
        """An empty body is a valid, empty stream."""
        for encoding in compress.ENCODINGS:
            self.assertEqual(decode(encoding, compressBody(b"", encoding)), b"")

    def test_afterFlush(self) -> None:
        """flush twice gives b''; compress after flush is a ValueError."""
        compressor = Compressor("gzip")
        compressor.compress(b"x")
        compressor.flush()
        self.assertEqual(compressor.flush(), b"")
        self.assertRaises(ValueError, compressor.compress, b"y")
        self.assertRaises(ValueError, compressor.syncFlush)

    def test_unknownEncoding(self) -> None:
        """Codings other than gzip and deflate are refused by name."""
        for encoding in ("br", "identity", "x-gzip", "GZIP"):
            error = self.assertRaises(ValueError, Compressor, encoding, 1)
            self.assertIn(repr(encoding), str(error))

    def test_levels(self) -> None:
        """Levels are clamped as Swoole does."""
        self.assertEqual([clampLevel(n) for n in (-1, 0, 1, 5, 9, 10, 42)], [6, 1, 1, 5, 9, 9, 9])
        self.assertEqual(Compressor("deflate", 0).level, 1)
        self.assertEqual(Compressor("gzip").level, DEFAULT_COMPRESSION_LEVEL)


class CompressibleTests(SynchronousTestCase):
    """Which types and lengths are worth compressing."""

    def test_defaults(self) -> None:
        """Swoole's defaults: level 1, minimum length 20 bytes."""
        self.assertEqual(DEFAULT_COMPRESSION_LEVEL, 1)
        self.assertEqual(DEFAULT_COMPRESSION_MIN_LENGTH, 20)

    def test_compressible(self) -> None:
        """Text, JSON, JavaScript, XML and SVG are; media and archives are not."""
        yes = ["text/html", "text/plain; charset=utf-8", "TEXT/CSS", "application/json",
               "application/problem+json", "application/javascript", "text/javascript",
               "application/xml", "application/atom+xml", "image/svg+xml",
               " application/json ; charset=utf-8"]
        no = ["image/png", "image/jpeg", "image/webp", "video/mp4", "audio/mpeg",
              "application/zip", "application/gzip", "application/octet-stream",
              "font/woff2", "application/pdf", "text/event-stream", "", None]
        for kind in yes:
            self.assertTrue(compressible(kind), kind)
        for kind in no:
            self.assertFalse(compressible(kind), kind)

    def test_shouldCompress(self) -> None:
        """At least the minimum length, and a compressible type."""
        self.assertFalse(shouldCompress("text/html", 19))
        self.assertTrue(shouldCompress("text/html", 20))
        self.assertFalse(shouldCompress("image/png", 10_000))
        self.assertFalse(shouldCompress("text/html", 4095, minLength=4096))
        self.assertTrue(shouldCompress("text/html", 4096, minLength=4096))
