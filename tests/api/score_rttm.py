"""DER of hypothesis RTTMs against one reference, as ../shared/tools/der.py scores it:
pyannote.metrics, overlap scored, a +/- 0.25 s collar (pyannote's `collar` is the total
width), one-to-one speaker mapping, scored over [0, SECONDS].

    python score_rttm.py REF SECONDS HYP [HYP ...]   ->  one DER (a fraction) per line
"""
import sys

from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate


def load(path):
    annotation = Annotation()
    with open(path, encoding="utf-8") as rttm:
        for i, line in enumerate(rttm):
            fields = line.split()
            if fields and fields[0] == "SPEAKER" and float(fields[4]) > 0:
                start = float(fields[3])
                annotation[Segment(start, start + float(fields[4])), i] = fields[7]
    return annotation


def main():
    reference, seconds, hypotheses = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    uem = Timeline([Segment(0.0, seconds)])
    metric = DiarizationErrorRate(collar=0.5, skip_overlap=False)
    for hypothesis in hypotheses:
        print(metric(load(reference), load(hypothesis), uem=uem))


if __name__ == "__main__":
    main()
