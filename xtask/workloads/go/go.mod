module pausewatch/gcload

go 1.19
