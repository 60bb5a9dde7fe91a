"Package metadata comes from settings.ini, which nbdev reads too."
from configparser import ConfigParser
from pathlib import Path

from setuptools import find_packages, setup

cfg = ConfigParser(interpolation=None)
cfg.read(Path(__file__).parent / "settings.ini")
cfg = cfg["DEFAULT"]

licenses = {"apache2": ("Apache Software License 2.0", "OSI Approved :: Apache Software License")}
statuses = ["1 - Planning", "2 - Pre-Alpha", "3 - Alpha", "4 - Beta", "5 - Production/Stable", "6 - Mature", "7 - Inactive"]
lic = licenses[cfg["license"]]
min_python = cfg["min_python"]
readme = Path(__file__).parent / "README.md"

setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    long_description=readme.read_text(encoding="utf-8") if readme.exists() else "",
    long_description_content_type="text/markdown",
    author=cfg["author"],
    author_email=cfg["author_email"],
    url=cfg["git_url"],
    license=lic[0],
    keywords=cfg["keywords"].split(),
    classifiers=[
        "Development Status :: " + statuses[int(cfg["status"]) - 1],
        "Intended Audience :: " + cfg["audience"].title(),
        "License :: " + lic[1],
        "Natural Language :: " + cfg["language"].title(),
        "Programming Language :: Python :: 3",
    ],
    python_requires=">=" + min_python,
    packages=find_packages(include=[cfg["lib_path"], cfg["lib_path"] + ".*"]),
    # Packages from the project's root. Stated, so an editable install puts the root on sys.path: `import zo_gpt` then
    # works from the folder that holds the clone, where the clone's own folder would otherwise shadow the package.
    package_dir={"": "."},
    include_package_data=True,
    install_requires=cfg["requirements"].split(),
    extras_require={
        "notebook": cfg["notebook_requirements"].split(),
        "interop": cfg["interop_requirements"].split(),
        # the tests and notebooks cover the export too, so a fresh clone's `make install` brings what it needs
        "dev": cfg["dev_requirements"].split() + cfg["notebook_requirements"].split() + cfg["interop_requirements"].split(),
    },
    entry_points={
        "console_scripts": cfg["console_scripts"].split(),
        "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
    },
    zip_safe=False,
)
