# MS-COCO 2014/2017: instances JSON + image folders, paths relative to data.root.
_base_ = ["./voc07.py"]
data = dict(name="coco", train_ann="annotations/instances_train2017.json", train_images="train2017",
            test_ann="annotations/instances_val2017.json", test_images="val2017", val_ratio=0.01)
attack = dict(trigger=["person", "dog"], target="car")
