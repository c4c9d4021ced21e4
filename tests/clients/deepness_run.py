"""Child process: run Deepness' own Segmentor and MapProcessorSegmentation on a raster.

``python deepness_run.py MODEL.onnx RASTER.tif OUT.npy`` writes Deepness' class map (its
values are class index + 1) and prints one JSON line: the result's type and message, the
declared shapes and the metadata Deepness read. Started by ``test_deepness.py`` through
:func:`qgis_env.run_in_qgis`.
"""

from __future__ import annotations

import json
import os
import sys
from unittest.mock import MagicMock

sys.path.append(os.environ["LANDCOVER_QGIS_PYTHONPATH"])
sys.path.append(os.environ["LANDCOVER_DEEPNESS"])

import numpy as np
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer


def main(model_path: str, raster_path: str, out_path: str) -> None:
    """Segment ``raster_path`` as the plugin does, with the model's own metadata."""
    app = QgsApplication([], False)
    app.initQgis()
    from deepness.common.channels_mapping import ChannelsMapping, ImageChannelStandaloneBand
    from deepness.common.processing_overlap import ProcessingOverlap, ProcessingOverlapOptions
    from deepness.common.processing_parameters.map_processing_parameters import (
        ProcessedAreaType,
    )
    from deepness.common.processing_parameters.segmentation_parameters import (
        SegmentationParameters,
    )
    from deepness.processing.map_processor.map_processing_result import (
        MapProcessingResultSuccess,
    )
    from deepness.processing.map_processor.map_processor_segmentation import (
        MapProcessorSegmentation,
    )
    from deepness.processing.models.segmentor import Segmentor

    rlayer = QgsRasterLayer(raster_path, "raster")
    if not rlayer.isValid():
        raise SystemExit(f"QGIS cannot open {raster_path}")
    QgsProject.instance().addMapLayer(rlayer)
    model = Segmentor(model_path)
    mapping = ChannelsMapping()
    mapping.set_image_channels([ImageChannelStandaloneBand(band_number=i + 1, name=f"b{i + 1}")
                                for i in range(rlayer.bandCount())])  # fmt: skip
    mapping.set_number_of_model_inputs_same_as_image_channels()
    params = SegmentationParameters(
        resolution_cm_per_px=model.get_metadata_resolution(),
        tile_size_px=model.get_input_size_in_pixels()[0],
        batch_size=1,
        local_cache=False,
        processed_area_type=ProcessedAreaType.ENTIRE_LAYER,
        mask_layer_id=None,
        input_layer_id=rlayer.id(),
        input_channels_mapping=mapping,
        postprocessing_dilate_erode_size=model.get_metadata_segmentation_small_segment() or 0,
        processing_overlap=ProcessingOverlap(ProcessingOverlapOptions.OVERLAP_IN_PERCENT,
                                             percentage=model.get_metadata_tiles_overlap()),
        pixel_classification__probability_threshold=model.get_metadata_segmentation_threshold(),
        model=model,
    )  # fmt: skip
    processor = MapProcessorSegmentation(rlayer=rlayer, vlayer_mask=None,
                                         map_canvas=MagicMock(), params=params)  # fmt: skip
    processor.run()
    result = processor._processing_result
    ok = isinstance(result, MapProcessingResultSuccess)
    if ok:
        processor.finished(True)  # the GUI step: the per-class vector layers
        np.save(out_path, processor.get_result_img())
    print(json.dumps({
        "success": ok, "message": result.message,
        "output_shapes": [list(s) for s in model.get_output_shapes()],
        "classes": model.get_number_of_output_channels(),
        "threshold": params.pixel_classification__probability_threshold,
        "resolution_cm": params.resolution_cm_per_px, "tile": params.tile_size_px,
        "layers": len(QgsProject.instance().mapLayers()),
    }))  # fmt: skip
    app.exitQgis()


if __name__ == "__main__":
    main(*sys.argv[1:4])
