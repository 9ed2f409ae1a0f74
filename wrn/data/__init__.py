"""The data: from files on disk to the batches training sees.

- layout: where each dataset's files live (folders, split files, official md5 sums and counts)
- manifest: ``wrn-manifest.json``, read and written (the route of prepared and generated data)
- download: fetching the official CIFAR/SVHN files, and ``python -m wrn.download``
- datasets: loading and checking CIFAR-10/100 and SVHN as tensors, ImageNet as ImageFolders
- prepared: vouching for prepared data through the loader, and ``python -m wrn.manifest``
- origin: where a folder's data comes from, and whether a run's data_source may train on it
- fake: small generated datasets in the real formats, and ``python -m wrn.fake_data``
- preprocess: mean/std, per-pixel mean and ZCA whitening
- pipeline: what a pipeline is to training (`DataPipeline`) and its stateless seeding
- augment: CIFAR's batched crop and flip
- tensor_pipeline: `make_pipeline`, and CIFAR and SVHN held whole on the device
- imagenet, imagenet_augment: ImageNet's input paths; fb.resnet.torch's augmentation
"""
