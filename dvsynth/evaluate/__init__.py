"""Evaluation: gold pairs (`gold`), judge calibration (`calibrate`), retriever tests on
gold pairs (`eval_retriever`), ranking metrics (`metrics`) and embedding models (`embed`)."""
