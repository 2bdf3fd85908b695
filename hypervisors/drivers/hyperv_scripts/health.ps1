# health: checks that Hyper-V answers and reads the host's Windows version.
# Parameters ($p): none.
# Returns: {"host": name, "os": Windows caption, "version": "10.0.build"}
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
[Console]::OutputEncoding = [Text.Encoding]::UTF8
trap { $m = "$($_.Exception.Message)"; if ($m -notlike 'PUREBOOT|*') { $m = 'PUREBOOT|{0}|{1}' -f $_.CategoryInfo.Category, $m }; throw $m }
$h = Get-VMHost
$os = Get-CimInstance Win32_OperatingSystem
ConvertTo-Json -Compress -Depth 5 -InputObject ([ordered]@{host = $h.ComputerName; os = $os.Caption; version = $os.Version})
