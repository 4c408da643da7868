"""Makes `segmentation-3.0-live.onnx`: segmentation-3.0 with its four BiLSTM
layers' weights quantised to int8 (ONNX Runtime dynamic quantisation,
`DynamicQuantizeLSTM`); every other node stays fp32.

Live sessions segment a 5 s window every 0.5 s, and the LSTMs are two thirds
of that cost: with int8 weights a 5 s window costs 17 ms instead of 27 ms on
one core of the development machine, and the online DER on the dev set is
unchanged (see README.md). The LSTM inputs are quantised per call, scaled over
the whole batch, so live runs segment one window per call. The offline engine
keeps the fp32 model.

    pip install onnx==1.23.2 onnxruntime==1.31.1
    python models/quantize_live.py models/segmentation-3.0.onnx models/segmentation-3.0-live.onnx
"""

import sys

from onnxruntime.quantization import QuantType, quantize_dynamic


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    quantize_dynamic(
        source,
        target,
        op_types_to_quantize=["LSTM"],
        weight_type=QuantType.QInt8,
    )


if __name__ == "__main__":
    main()
