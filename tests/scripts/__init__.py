"""Tests of scripts/: the development stack's launcher."""
