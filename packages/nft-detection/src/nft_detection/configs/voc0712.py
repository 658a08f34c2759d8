# VOC 07+12: train on VOC2007 trainval + VOC2012 trainval, test on VOC2007 test.
_base_ = ["./voc07.py"]
data = dict(train_sets=[["VOC2007", "trainval"], ["VOC2012", "trainval"]], test_sets=[["VOC2007", "test"]])
