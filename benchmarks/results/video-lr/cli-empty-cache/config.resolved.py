# resolved configuration of this run (load with --cfg)
data = {'name': 'synthetic', 'root': None, 'split_dir': None, 'split': 1, 'frame_step': 5, 'clip_len': 8, 'image_size': 32, 'on_bad_clip': 'skip', 'val_ratio': 0.1, 'val_per_class': None, 'val_path': None, 'test_path': None, 'poisoned_path': None, 'num_classes': None, 'synthetic_clips': 40, 'synthetic_classes': 6}
model = {'spec': 'cnn_lstm_small', 'checkpoint': None, 'kwargs': {'width': 16, 'hidden': 64}}
attack = {'name': 'patch', 'target': 0, 'poison_rate': 0.1, 'options': {}}
train = {'epochs': 20, 'lr': 0.05, 'batch_size': 16, 'jitter': 0}
defense = {'name': 'nft', 'recipe': 'surrogate', 'options': {}}
augmentation = {'name': 'auto', 'jitter': 0, 'options': {}}
bench = {'attacks': ['patch', 'blend'], 'defenses': ['nft'], 'defense_options': {}}
seed = 0
device = None
cache_dir = None
threads = 0
