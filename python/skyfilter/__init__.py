from skyfilter._core import *  # noqa
