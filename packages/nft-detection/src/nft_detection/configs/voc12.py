# Pascal VOC 2012: train on train, test on val (VOC2012's test annotations are not public).
_base_ = ["./voc07.py"]
data = dict(train_sets=[["VOC2012", "train"]], test_sets=[["VOC2012", "val"]])
