# HMDB-51 (videos under data.root/<class>/*.avi, split files <class>_test_splitN.txt in
# <root>/testTrainMulti_7030_splits or data.split_dir); 5% per class for validation as in the paper.
_base_ = ["ucf101.py"]
data = dict(name="hmdb51", root="data/hmdb51", val_ratio=0.05)
