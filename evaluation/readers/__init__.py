"""Readers for the external datasets of the CroCo paper (NYUv2, MPI-Sintel), in their official file formats.

These need only numpy, h5py, scipy and OpenCV; the data itself is never downloaded here.
"""

from evaluation.readers.nyuv2 import NYU_DEPTH_INTRINSICS, NYUv2, read_nyuv2_split
from evaluation.readers.sintel import SintelFlow, read_flo, write_flo

__all__ = ["NYU_DEPTH_INTRINSICS", "NYUv2", "read_nyuv2_split", "SintelFlow", "read_flo", "write_flo"]
