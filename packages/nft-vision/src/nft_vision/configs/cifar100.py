_base_ = ["cifar10.py"]
data = dict(name="cifar100", root="data/cifar-100-python")
model = dict(mean=[0.5071, 0.4865, 0.4409], std=[0.2673, 0.2564, 0.2762])
